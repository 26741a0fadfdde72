//! Prometheus metrics, served at `/metrics` in the text exposition format.
//!
//! ```text
//!   windlass_reconcile_total{namespace,name,result}      counter  result: success | failure | skipped
//!   windlass_reconcile_duration_seconds                  histogram
//!   windlass_application_ready{namespace,name}           gauge    1 Ready, 0 not
//!   windlass_application_drifted_objects{namespace,name} gauge
//!   windlass_git_fetch_duration_seconds                  histogram
//!   windlass_apply_requests_total{namespace,name,operation} counter  apply | delete (writes to managed objects)
//!   windlass_api_requests_total{method,dry_run}          counter  every request to the API server
//!   windlass_webhook_received_total{provider}            counter  deliveries to /hooks/<provider>
//!   windlass_webhook_rejected_total{provider,reason}     counter  reason: signature | payload | too-large
//!   windlass_webhook_triggered_total{provider}           counter  Applications a delivery triggered
//! ```

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub namespace: String,
    pub name: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub namespace: String,
    pub name: String,
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub dry_run: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub provider: String,
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub ready: Family<AppLabels, Gauge>,
    pub drifted_objects: Family<AppLabels, Gauge>,
    pub git_fetch_duration: Histogram,
    pub apply_requests: Family<WriteLabels, Counter>,
    pub api_requests: Family<RequestLabels, Counter>,
    pub webhook_received: Family<ProviderLabels, Counter>,
    pub webhook_rejected: Family<RejectLabels, Counter>,
    pub webhook_triggered: Family<ProviderLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::default();
        let metrics = Metrics {
            reconciles: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            ready: Family::default(),
            drifted_objects: Family::default(),
            git_fetch_duration: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            apply_requests: Family::default(),
            api_requests: Family::default(),
            webhook_received: Family::default(),
            webhook_rejected: Family::default(),
            webhook_triggered: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "windlass_reconcile",
            "Reconciles of Applications, by result",
            metrics.reconciles.clone(),
        );
        registry.register(
            "windlass_reconcile_duration_seconds",
            "How long one reconcile took",
            metrics.reconcile_duration.clone(),
        );
        registry.register(
            "windlass_application_ready",
            "1 when the Application is Ready, else 0",
            metrics.ready.clone(),
        );
        registry.register(
            "windlass_application_drifted_objects",
            "Live objects that differ from the applied revision",
            metrics.drifted_objects.clone(),
        );
        registry.register(
            "windlass_git_fetch_duration_seconds",
            "How long resolving a source (ls-remote, and a fetch when needed) took",
            metrics.git_fetch_duration.clone(),
        );
        registry.register(
            "windlass_apply_requests",
            "Writes to managed objects: server-side applies and prune deletions",
            metrics.apply_requests.clone(),
        );
        registry.register(
            "windlass_api_requests",
            "Requests sent to the Kubernetes API server",
            metrics.api_requests.clone(),
        );
        registry.register(
            "windlass_webhook_received",
            "Webhook deliveries to /hooks/<provider>, before any check",
            metrics.webhook_received.clone(),
        );
        registry.register(
            "windlass_webhook_rejected",
            "Webhook deliveries refused, by reason: signature, payload, too-large",
            metrics.webhook_rejected.clone(),
        );
        registry.register(
            "windlass_webhook_triggered",
            "Applications that webhook pushes triggered",
            metrics.webhook_triggered.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }

    /// Forgets a deleted Application's gauges.
    pub fn forget(&self, labels: &AppLabels) {
        self.ready.remove(labels);
        self.drifted_objects.remove(labels);
    }

    /// Counts one request to the API server.
    pub fn count_request(&self, method: &str, dry_run: bool) {
        self.api_requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                dry_run: dry_run.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exposed_by_name() {
        let metrics = Metrics::default();
        let app = AppLabels {
            namespace: "team-a".into(),
            name: "web".into(),
        };
        metrics.ready.get_or_create(&app).set(1);
        metrics
            .reconciles
            .get_or_create(&ResultLabels {
                namespace: "team-a".into(),
                name: "web".into(),
                result: "success".into(),
            })
            .inc();
        metrics.reconcile_duration.observe(0.2);
        metrics.drifted_objects.get_or_create(&app).set(2);
        metrics
            .apply_requests
            .get_or_create(&WriteLabels {
                namespace: "team-a".into(),
                name: "web".into(),
                operation: "apply".into(),
            })
            .inc_by(3);
        metrics.count_request("PATCH", true);
        let github = ProviderLabels {
            provider: "github".into(),
        };
        metrics.webhook_received.get_or_create(&github).inc_by(2);
        metrics
            .webhook_rejected
            .get_or_create(&RejectLabels {
                provider: "github".into(),
                reason: "signature".into(),
            })
            .inc();
        metrics.webhook_triggered.get_or_create(&github).inc_by(4);
        let text = metrics.encode();
        for expected in [
            "windlass_reconcile_total{namespace=\"team-a\",name=\"web\",result=\"success\"} 1",
            "windlass_reconcile_duration_seconds_count 1",
            "windlass_application_ready{namespace=\"team-a\",name=\"web\"} 1",
            "windlass_application_drifted_objects{namespace=\"team-a\",name=\"web\"} 2",
            "# TYPE windlass_git_fetch_duration_seconds histogram",
            "windlass_apply_requests_total{namespace=\"team-a\",name=\"web\",operation=\"apply\"} 3",
            "windlass_api_requests_total{method=\"PATCH\",dry_run=\"true\"} 1",
            "windlass_webhook_received_total{provider=\"github\"} 2",
            "windlass_webhook_rejected_total{provider=\"github\",reason=\"signature\"} 1",
            "windlass_webhook_triggered_total{provider=\"github\"} 4",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
        metrics.forget(&app);
        assert!(!metrics.encode().contains("windlass_application_ready{"));
    }
}
