//! The ground every later test stands on: the real API server and controller
//! manager do what windlass will rely on (CRUD, server-side apply with field
//! ownership, dry-run validation, garbage collection, namespace deletion).

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::{eventually, with_namespace};

const LIMIT: Duration = Duration::from_secs(120);

fn deployment(name: &str, replicas: i32, image: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [ { "name": "web", "image": image } ] }
            }
        }
    })
}

fn api_status(error: kube::Error) -> kube::core::Status {
    match error {
        kube::Error::Api(status) => *status,
        other => panic!("expected an error response from the API server, got: {other}"),
    }
}

#[tokio::test]
async fn configmap_can_be_created_read_and_deleted() {
    with_namespace("configmap", |client, ns| async move {
        let api: Api<ConfigMap> = Api::namespaced(client, &ns);
        let configmap: ConfigMap = serde_json::from_value(json!({
            "metadata": { "name": "settings" },
            "data": { "color": "blue", "size": "3" },
        }))
        .unwrap();
        api.create(&PostParams::default(), &configmap)
            .await
            .unwrap();

        let read = api.get("settings").await.unwrap();
        let data = read.data.expect("data");
        assert_eq!(data.get("color").map(String::as_str), Some("blue"));
        assert_eq!(data.get("size").map(String::as_str), Some("3"));

        api.delete("settings", &DeleteParams::default())
            .await
            .unwrap();
        let status = api_status(api.get("settings").await.unwrap_err());
        assert_eq!(status.code, 404, "{status:?}");
    })
    .await;
}

#[tokio::test]
async fn server_side_apply_records_each_field_manager() {
    with_namespace("ssa", |client, ns| async move {
        let api: Api<Deployment> = Api::namespaced(client, &ns);
        let windlass = PatchParams::apply("windlass");
        api.patch(
            "web",
            &windlass,
            &Patch::Apply(deployment("web", 1, "nginx:1.27")),
        )
        .await
        .unwrap();

        // Another manager changes a field windlass owns: without force the
        // server refuses and names the owner...
        let other_change = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": "web" },
            "spec": { "replicas": 3 },
        });
        let error = api
            .patch(
                "web",
                &PatchParams::apply("hand-edit"),
                &Patch::Apply(&other_change),
            )
            .await
            .unwrap_err();
        let status = api_status(error);
        assert_eq!(status.code, 409, "{status:?}");
        assert!(status.message.contains("windlass"), "{}", status.message);

        // ...and with force it takes the field over.
        let applied = api
            .patch(
                "web",
                &PatchParams::apply("hand-edit").force(),
                &Patch::Apply(&other_change),
            )
            .await
            .unwrap();
        assert_eq!(applied.spec.replicas, Some(3));

        let managed = applied.metadata.managed_fields.expect("managedFields");
        let fields_of = |manager: &str| {
            let entry = managed
                .iter()
                .find(|m| m.manager.as_deref() == Some(manager))
                .unwrap_or_else(|| panic!("no managedFields entry for {manager}: {managed:?}"));
            assert_eq!(entry.operation.as_deref(), Some("Apply"));
            serde_json::to_value(entry.fields_v1.as_ref().expect("fieldsV1")).unwrap()
        };
        let windlass_fields = fields_of("windlass");
        let hand_edit_fields = fields_of("hand-edit");
        assert!(hand_edit_fields["f:spec"].get("f:replicas").is_some());
        assert!(windlass_fields["f:spec"].get("f:replicas").is_none());
        assert!(windlass_fields["f:spec"].get("f:template").is_some());
    })
    .await;
}

#[tokio::test]
async fn dry_run_rejects_an_invalid_object_with_the_servers_message_and_stores_nothing() {
    with_namespace("dry-run", |client, ns| async move {
        let api: Api<Deployment> = Api::namespaced(client, &ns);
        let mut invalid = deployment("broken", 1, "nginx:1.27");
        invalid["spec"]["selector"]["matchLabels"]["app"] = json!("something-else");

        let error = api
            .patch(
                "broken",
                &PatchParams::apply("windlass").dry_run(),
                &Patch::Apply(&invalid),
            )
            .await
            .unwrap_err();
        let status = api_status(error);
        assert_eq!(status.code, 422, "{status:?}");
        assert_eq!(status.reason, "Invalid");
        assert!(
            status
                .message
                .contains("`selector` does not match template `labels`"),
            "{}",
            status.message
        );
        // The windlass error text carries the server's words.
        let explained = windlass::cluster::explain(&kube::Error::Api(Box::new(status)));
        assert!(explained.contains("(Invalid, 422)"), "{explained}");

        let status = api_status(api.get("broken").await.unwrap_err());
        assert_eq!(status.code, 404, "dry-run must not store the object");
    })
    .await;
}

/// Deployment -> ReplicaSet -> Pod is the controller manager's work.
async fn deployment_with_pod(client: &Client, ns: &str, name: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deployments
        .patch(
            name,
            &PatchParams::apply("windlass"),
            &Patch::Apply(deployment(name, 1, "nginx:1.27")),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!("app={name}");
    eventually("the controller manager creating a Pod", LIMIT, || {
        let pods = pods.clone();
        let selector = selector.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| e.to_string())?;
            if list.items.is_empty() {
                Err("no pods yet".to_string())
            } else {
                Ok(())
            }
        }
    })
    .await;
}

#[tokio::test]
async fn garbage_collector_deletes_dependents_of_a_deleted_owner() {
    with_namespace("gc", |client, ns| async move {
        deployment_with_pod(&client, &ns, "web").await;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        deployments
            .delete("web", &DeleteParams::background())
            .await
            .unwrap();

        let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        eventually(
            "garbage collection of the ReplicaSet and Pod",
            LIMIT,
            || {
                let (replicasets, pods) = (replicasets.clone(), pods.clone());
                async move {
                    let rs = replicasets
                        .list(&ListParams::default())
                        .await
                        .map_err(|e| e.to_string())?;
                    let po = pods
                        .list(&ListParams::default())
                        .await
                        .map_err(|e| e.to_string())?;
                    if rs.items.is_empty() && po.items.is_empty() {
                        Ok(())
                    } else {
                        Err(format!(
                            "{} replicasets, {} pods left",
                            rs.items.len(),
                            po.items.len()
                        ))
                    }
                }
            },
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn deleting_a_namespace_that_holds_objects_completes() {
    let client = support::client().await;
    let ns = support::create_namespace(&client, "ns-delete").await;
    deployment_with_pod(&client, &ns, "web").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let configmap: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "settings" } })).unwrap();
    configmaps
        .create(&PostParams::default(), &configmap)
        .await
        .unwrap();

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
    eventually("the namespace disappearing", LIMIT, || {
        let namespaces = namespaces.clone();
        let ns = ns.clone();
        async move {
            match namespaces.get_opt(&ns).await {
                Ok(None) => Ok(()),
                Ok(Some(namespace)) => Err(format!(
                    "still there: {:?}",
                    namespace.status.and_then(|s| s.conditions)
                )),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await;
}
