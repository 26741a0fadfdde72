//! Is one live object healthy? Pure: a live object in, a verdict out. The
//! wait loop that polls the cluster lives in `apply`.
//!
//! ```text
//!   live object ──evaluate──► Health { state: Healthy | Progressing | Failed,
//!                                      reason: "deployment/web: 0/3 replicas available" }
//! ```
//!
//! Rules, per kind (kstatus conventions for everything generic):
//! - every workload first waits for its controller to observe the current
//!   generation (`status.observedGeneration >= metadata.generation`);
//! - Deployment: updated, and available replicas equal the desired count,
//!   no old replicas left; a `ProgressDeadlineExceeded` is a failure;
//! - StatefulSet: ready and updated replicas, current revision = update
//!   revision (RollingUpdate);
//! - DaemonSet: updated and available pods on every scheduled node;
//! - ReplicaSet: available replicas;
//! - Job: `Complete` is healthy, `Failed` is a failure, else running;
//! - Pod: `Succeeded`, or `Running` and `Ready`; `Failed`, or a container
//!   in CrashLoopBackOff / ImagePullBackOff / ErrImagePull, is a failure;
//! - PersistentVolumeClaim: `Bound` (`Lost` is a failure);
//! - Service: a LoadBalancer has an ingress address; others at once;
//! - CustomResourceDefinition: `Established` (`NamesAccepted=False` fails);
//! - anything else with conditions: `Stalled=True` fails, `Ready=False` or
//!   `Reconciling=True` is progressing, otherwise healthy; objects without
//!   conditions are healthy once they exist.

use serde_json::Value;

use crate::render::ObjectId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    Healthy,
    Progressing,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub state: HealthState,
    /// Why, for anything but healthy: `deployment/web: 0/3 replicas available`.
    pub reason: String,
}

impl Health {
    fn healthy() -> Health {
        Health {
            state: HealthState::Healthy,
            reason: String::new(),
        }
    }
}

pub fn evaluate(id: &ObjectId, live: &Value) -> Health {
    let name = format!("{}/{}", id.kind.to_lowercase(), id.name);
    let status = &live["status"];
    let verdict = |state: HealthState, why: String| Health {
        state,
        reason: format!("{name}: {why}"),
    };
    let progressing = |why: String| verdict(HealthState::Progressing, why);
    let failed = |why: String| verdict(HealthState::Failed, why);

    let is_workload = matches!(
        (id.group.as_str(), id.kind.as_str()),
        (
            "apps",
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet"
        )
    );
    if is_workload || !conditions(status).is_empty() {
        let generation = live["metadata"]["generation"].as_i64();
        let observed = status["observedGeneration"].as_i64();
        match (generation, observed) {
            (Some(g), Some(o)) if o < g => {
                return progressing(format!(
                    "waiting for the controller to observe generation {g}"
                ));
            }
            (Some(g), None) if is_workload => {
                return progressing(format!(
                    "waiting for the controller to observe generation {g}"
                ));
            }
            _ => {}
        }
    }

    let int = |v: &Value| v.as_i64().unwrap_or(0);
    match (id.group.as_str(), id.kind.as_str()) {
        ("apps", "Deployment") => {
            if let Some(c) = condition(status, "Progressing")
                && c["reason"] == "ProgressDeadlineExceeded"
            {
                return failed(format!(
                    "progress deadline exceeded: {}",
                    text(&c["message"])
                ));
            }
            let desired = live["spec"]["replicas"].as_i64().unwrap_or(1);
            let updated = int(&status["updatedReplicas"]);
            let total = int(&status["replicas"]);
            let available = int(&status["availableReplicas"]);
            if updated < desired {
                progressing(format!("{updated}/{desired} replicas updated"))
            } else if total > updated {
                progressing(format!(
                    "{} old replicas pending termination",
                    total - updated
                ))
            } else if available < desired {
                progressing(format!("{available}/{desired} replicas available"))
            } else {
                Health::healthy()
            }
        }
        ("apps", "StatefulSet") => {
            let desired = live["spec"]["replicas"].as_i64().unwrap_or(1);
            let ready = int(&status["readyReplicas"]);
            let rolling = live["spec"]["updateStrategy"]["type"].as_str() != Some("OnDelete");
            if ready < desired {
                return progressing(format!("{ready}/{desired} replicas ready"));
            }
            if rolling {
                let partition = live["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
                    .as_i64()
                    .unwrap_or(0);
                let updated = int(&status["updatedReplicas"]);
                if updated < desired - partition {
                    return progressing(format!(
                        "{updated}/{} replicas updated",
                        desired - partition
                    ));
                }
                if partition == 0 && status["currentRevision"] != status["updateRevision"] {
                    return progressing("rolling update in progress".to_string());
                }
            }
            Health::healthy()
        }
        ("apps", "DaemonSet") => {
            let desired = int(&status["desiredNumberScheduled"]);
            let updated = int(&status["updatedNumberScheduled"]);
            let available = int(&status["numberAvailable"]);
            if updated < desired {
                progressing(format!("{updated}/{desired} pods updated"))
            } else if available < desired {
                progressing(format!("{available}/{desired} pods available"))
            } else {
                Health::healthy()
            }
        }
        ("apps", "ReplicaSet") => {
            let desired = live["spec"]["replicas"].as_i64().unwrap_or(1);
            let available = int(&status["availableReplicas"]);
            if available < desired {
                progressing(format!("{available}/{desired} replicas available"))
            } else {
                Health::healthy()
            }
        }
        ("batch", "Job") => {
            if is_true(status, "Complete") {
                Health::healthy()
            } else if let Some(c) = condition(status, "Failed").filter(|c| c["status"] == "True") {
                failed(format!("failed: {}", reason_and_message(c)))
            } else {
                progressing(format!("running ({} active)", int(&status["active"])))
            }
        }
        ("", "Pod") => pod_health(status, progressing, failed),
        ("", "PersistentVolumeClaim") => match status["phase"].as_str() {
            Some("Bound") => Health::healthy(),
            Some("Lost") => failed("the volume is lost".to_string()),
            other => progressing(format!("{} (not bound yet)", other.unwrap_or("Pending"))),
        },
        ("", "Service") => {
            if live["spec"]["type"] == "LoadBalancer"
                && status["loadBalancer"]["ingress"]
                    .as_array()
                    .is_none_or(Vec::is_empty)
            {
                progressing("waiting for a load balancer address".to_string())
            } else {
                Health::healthy()
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            if let Some(c) = condition(status, "NamesAccepted").filter(|c| c["status"] == "False") {
                failed(format!("names not accepted: {}", reason_and_message(c)))
            } else if is_true(status, "Established") {
                Health::healthy()
            } else {
                progressing("not established yet".to_string())
            }
        }
        _ => {
            if let Some(c) = condition(status, "Stalled").filter(|c| c["status"] == "True") {
                failed(format!("stalled: {}", reason_and_message(c)))
            } else if let Some(c) = condition(status, "Ready").filter(|c| c["status"] != "True") {
                progressing(format!("not ready: {}", reason_and_message(c)))
            } else if let Some(c) =
                condition(status, "Reconciling").filter(|c| c["status"] == "True")
            {
                progressing(format!("reconciling: {}", reason_and_message(c)))
            } else {
                Health::healthy()
            }
        }
    }
}

fn pod_health(
    status: &Value,
    progressing: impl Fn(String) -> Health,
    failed: impl Fn(String) -> Health,
) -> Health {
    for container in status["containerStatuses"]
        .as_array()
        .into_iter()
        .chain(status["initContainerStatuses"].as_array())
        .flatten()
    {
        let waiting = &container["state"]["waiting"];
        if let Some(
            reason @ ("CrashLoopBackOff"
            | "ImagePullBackOff"
            | "ErrImagePull"
            | "CreateContainerConfigError"
            | "InvalidImageName"),
        ) = waiting["reason"].as_str()
        {
            return failed(format!(
                "container {} is in {reason}",
                text(&container["name"])
            ));
        }
    }
    match status["phase"].as_str() {
        Some("Succeeded") => Health::healthy(),
        Some("Failed") => failed(format!("failed: {}", text(&status["message"]))),
        Some("Running") if is_true(status, "Ready") => Health::healthy(),
        Some("Running") => progressing("running, not ready".to_string()),
        _ => match condition(status, "PodScheduled").filter(|c| c["status"] == "False") {
            Some(c) => progressing(format!("not scheduled: {}", reason_and_message(c))),
            None => progressing("pending".to_string()),
        },
    }
}

fn conditions(status: &Value) -> &[Value] {
    status["conditions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    conditions(status).iter().find(|c| c["type"] == kind)
}

fn is_true(status: &Value, kind: &str) -> bool {
    condition(status, kind).is_some_and(|c| c["status"] == "True")
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

fn reason_and_message(condition: &Value) -> String {
    match (text(&condition["reason"]), text(&condition["message"])) {
        ("", "") => "no reason given".to_string(),
        (reason, "") => reason.to_string(),
        ("", message) => message.to_string(),
        (reason, message) => format!("{reason}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(group: &str, kind: &str, name: &str) -> ObjectId {
        ObjectId {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: Some("ns".into()),
            name: name.into(),
        }
    }

    fn check(group: &str, kind: &str, live: Value) -> Health {
        evaluate(&id(group, kind, "web"), &live)
    }

    #[test]
    fn deployments_wait_for_observation_rollout_and_availability() {
        let base = |status: Value| json!({ "metadata": { "generation": 2 }, "spec": { "replicas": 3 }, "status": status });
        let h = check(
            "apps",
            "Deployment",
            base(json!({ "observedGeneration": 1 })),
        );
        assert_eq!(h.state, HealthState::Progressing);
        assert_eq!(
            h.reason,
            "deployment/web: waiting for the controller to observe generation 2"
        );
        let h = check(
            "apps",
            "Deployment",
            base(
                json!({ "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 0 }),
            ),
        );
        assert_eq!(h.reason, "deployment/web: 0/3 replicas available");
        let h = check(
            "apps",
            "Deployment",
            base(
                json!({ "observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3 }),
            ),
        );
        assert_eq!(
            h.reason,
            "deployment/web: 1 old replicas pending termination"
        );
        let h = check(
            "apps",
            "Deployment",
            base(
                json!({ "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3 }),
            ),
        );
        assert_eq!(h.state, HealthState::Healthy);
        let h = check(
            "apps",
            "Deployment",
            base(json!({ "observedGeneration": 2, "conditions": [
                { "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet web-1 has timed out" }
            ]})),
        );
        assert_eq!(h.state, HealthState::Failed);
        assert!(
            h.reason.contains("progress deadline exceeded"),
            "{}",
            h.reason
        );
    }

    #[test]
    fn statefulsets_daemonsets_and_replicasets() {
        let sts = |status: Value| json!({ "metadata": { "generation": 1 }, "spec": { "replicas": 2 }, "status": status });
        assert_eq!(
            check(
                "apps",
                "StatefulSet",
                sts(json!({ "observedGeneration": 1, "readyReplicas": 1 }))
            )
            .reason,
            "statefulset/web: 1/2 replicas ready"
        );
        assert_eq!(
            check("apps", "StatefulSet", sts(json!({ "observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2, "currentRevision": "a", "updateRevision": "b" }))).state,
            HealthState::Progressing
        );
        assert_eq!(
            check("apps", "StatefulSet", sts(json!({ "observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2, "currentRevision": "b", "updateRevision": "b" }))).state,
            HealthState::Healthy
        );
        let ds = json!({ "metadata": { "generation": 1 }, "status": { "observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2 } });
        assert_eq!(
            check("apps", "DaemonSet", ds).reason,
            "daemonset/web: 2/3 pods available"
        );
        let rs = json!({ "metadata": { "generation": 1 }, "spec": { "replicas": 2 }, "status": { "observedGeneration": 1, "availableReplicas": 2 } });
        assert_eq!(check("apps", "ReplicaSet", rs).state, HealthState::Healthy);
    }

    #[test]
    fn jobs_complete_or_fail() {
        let job =
            |conditions: Value| json!({ "status": { "active": 1, "conditions": conditions } });
        assert_eq!(
            check("batch", "Job", job(json!([]))).reason,
            "job/web: running (1 active)"
        );
        assert_eq!(
            check(
                "batch",
                "Job",
                job(json!([{ "type": "Complete", "status": "True" }]))
            )
            .state,
            HealthState::Healthy
        );
        let h = check(
            "batch",
            "Job",
            job(
                json!([{ "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit" }]),
            ),
        );
        assert_eq!(h.state, HealthState::Failed);
        assert_eq!(
            h.reason,
            "job/web: failed: BackoffLimitExceeded: Job has reached the specified backoff limit"
        );
    }

    #[test]
    fn pods_pvcs_services_and_crds() {
        let pending = json!({ "status": { "phase": "Pending", "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no nodes available" }] } });
        assert_eq!(
            check("", "Pod", pending).reason,
            "pod/web: not scheduled: Unschedulable: no nodes available"
        );
        let ready = json!({ "status": { "phase": "Running", "conditions": [{ "type": "Ready", "status": "True" }] } });
        assert_eq!(check("", "Pod", ready).state, HealthState::Healthy);
        let crash = json!({ "status": { "phase": "Running", "containerStatuses": [{ "name": "app", "state": { "waiting": { "reason": "CrashLoopBackOff" } } }] } });
        assert_eq!(
            check("", "Pod", crash).reason,
            "pod/web: container app is in CrashLoopBackOff"
        );
        assert_eq!(
            check(
                "",
                "PersistentVolumeClaim",
                json!({ "status": { "phase": "Bound" } })
            )
            .state,
            HealthState::Healthy
        );
        assert_eq!(
            check(
                "",
                "PersistentVolumeClaim",
                json!({ "status": { "phase": "Pending" } })
            )
            .state,
            HealthState::Progressing
        );
        assert_eq!(
            check("", "Service", json!({ "spec": { "type": "ClusterIP" } })).state,
            HealthState::Healthy
        );
        assert_eq!(
            check(
                "",
                "Service",
                json!({ "spec": { "type": "LoadBalancer" }, "status": {} })
            )
            .state,
            HealthState::Progressing
        );
        let lb = json!({ "spec": { "type": "LoadBalancer" }, "status": { "loadBalancer": { "ingress": [{ "ip": "10.0.0.9" }] } } });
        assert_eq!(check("", "Service", lb).state, HealthState::Healthy);
        let crd =
            json!({ "status": { "conditions": [{ "type": "Established", "status": "True" }] } });
        assert_eq!(
            check("apiextensions.k8s.io", "CustomResourceDefinition", crd).state,
            HealthState::Healthy
        );
        assert_eq!(
            check(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                json!({})
            )
            .state,
            HealthState::Progressing
        );
    }

    #[test]
    fn custom_resources_follow_kstatus() {
        let cr = |conditions: Value, observed: i64| json!({ "metadata": { "generation": 2 }, "status": { "observedGeneration": observed, "conditions": conditions } });
        assert_eq!(
            check(
                "example.com",
                "Widget",
                cr(json!([{ "type": "Ready", "status": "True" }]), 1)
            )
            .state,
            HealthState::Progressing
        );
        assert_eq!(
            check(
                "example.com",
                "Widget",
                cr(json!([{ "type": "Ready", "status": "True" }]), 2)
            )
            .state,
            HealthState::Healthy
        );
        let h = check(
            "example.com",
            "Widget",
            cr(
                json!([{ "type": "Ready", "status": "False", "reason": "Waiting", "message": "db not up" }]),
                2,
            ),
        );
        assert_eq!(h.reason, "widget/web: not ready: Waiting: db not up");
        let h = check(
            "example.com",
            "Widget",
            cr(
                json!([{ "type": "Stalled", "status": "True", "reason": "BadConfig" }]),
                2,
            ),
        );
        assert_eq!(h.state, HealthState::Failed);
        assert_eq!(
            check("example.com", "Widget", json!({ "spec": {} })).state,
            HealthState::Healthy
        );
        assert_eq!(
            check("", "ConfigMap", json!({ "data": {} })).state,
            HealthState::Healthy
        );
    }
}
