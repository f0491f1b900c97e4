//! Unit tests of the fake API server's own semantics: selectors, patches, watches, CRDs.

use super::*;

/// Label selectors select what the API server would.
#[test]
fn selectors_match_like_the_api_server() {
    let labels = BTreeMap::from([
        ("app".to_owned(), "shop".to_owned()),
        ("tier".to_owned(), "web".to_owned()),
    ]);
    let check = |s: &str| {
        parse_selector(s)
            .unwrap()
            .iter()
            .all(|r| r.matches(&labels))
    };
    assert!(check("app=shop"));
    assert!(check("app==shop,tier in (web, db)"));
    assert!(check("app,!missing,tier notin (db)"));
    assert!(!check("app!=shop"));
    assert!(!check("tier in (db)"));
    assert!(check(""));
}

/// Query strings are percent-decoded.
#[test]
fn query_values_are_decoded() {
    let q = parse_query("labelSelector=app%3Dshop%2Ctier+in+%28a%29&watch=false");
    assert_eq!(q["labelSelector"], "app=shop,tier in (a)");
}

/// Apply removes the fields its manager stopped applying and keeps everyone else's.
#[test]
fn apply_drops_fields_the_manager_no_longer_applies() {
    let mut target = json!({"data": {"a": "1", "b": "2", "theirs": "x"}});
    let previous = json!({"data": {"a": "1", "b": "2"}});
    let applied = json!({"data": {"a": "3"}});
    remove_dropped(&mut target, &previous, &applied);
    deep_merge(&mut target, &applied);
    assert_eq!(target, json!({"data": {"a": "3", "theirs": "x"}}));
}

/// A strategic merge patch merges named list items (one webhook's caBundle) and keeps the
/// others' fields, where a JSON merge patch would replace the list.
#[test]
fn strategic_merge_merges_lists_by_name() {
    let mut target = json!({"webhooks": [
        {"name": "a", "rules": [1], "clientConfig": {"service": {"name": "s"}}},
        {"name": "b", "rules": [2]},
    ]});
    let mut patch = json!({"webhooks": [{"name": "a", "clientConfig": {"caBundle": "Q0E="}}]});
    strategic_merge(&mut target, &mut patch);
    assert_eq!(target["webhooks"][0]["rules"], json!([1]));
    assert_eq!(target["webhooks"][0]["clientConfig"]["caBundle"], "Q0E=");
    assert_eq!(
        target["webhooks"][0]["clientConfig"]["service"]["name"],
        "s"
    );
    assert_eq!(target["webhooks"][1]["name"], "b");
}

mod watches {
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{
        Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
    };

    use super::*;

    fn config_map(name: &str, app: &str) -> ConfigMap {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
        }))
        .unwrap()
    }

    fn name_of(event: &WatchEvent<ConfigMap>) -> (String, String) {
        let (kind, object) = match event {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            other => panic!("unexpected event {other:?}"),
        };
        (kind.to_owned(), object.metadata.name.clone().unwrap())
    }

    /// A watch from a list's resource version streams later changes only, and an object
    /// leaving the label selector arrives as DELETED, as from a real API server.
    #[tokio::test]
    async fn watch_streams_changes_after_the_listed_version() {
        let server = FakeApiServer::new();
        let api: Api<ConfigMap> = Api::namespaced(server.client(), "shop");
        api.create(&PostParams::default(), &config_map("a", "shop"))
            .await
            .unwrap();
        let list = api
            .list(&ListParams::default().labels("app=shop"))
            .await
            .unwrap();
        assert_eq!(list.items.len(), 1);
        let version = list.metadata.resource_version.unwrap();
        let stream = api
            .watch(
                &WatchParams::default().labels("app=shop").timeout(30),
                &version,
            )
            .await
            .unwrap();
        let mut stream = stream.boxed();
        api.create(&PostParams::default(), &config_map("b", "shop"))
            .await
            .unwrap();
        api.create(&PostParams::default(), &config_map("other", "else"))
            .await
            .unwrap();
        let relabel = json!({"metadata": {"labels": {"app": "else"}}});
        api.patch("a", &PatchParams::default(), &Patch::Merge(&relabel))
            .await
            .unwrap();
        api.delete("b", &DeleteParams::default()).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(name_of(&stream.try_next().await.unwrap().unwrap()));
        }
        let expected = [("ADDED", "b"), ("DELETED", "a"), ("DELETED", "b")]
            .map(|(k, n)| (k.to_owned(), n.to_owned()));
        assert_eq!(seen, expected);
    }

    /// A watch from a version older than the kept history gets 410 Expired, so kube's watcher
    /// lists again.
    #[tokio::test]
    async fn watch_from_a_compacted_version_is_expired() {
        let server = FakeApiServer::new();
        let api: Api<ConfigMap> = Api::namespaced(server.client(), "shop");
        for i in 0..(HISTORY + 5) {
            server.create(&config_map(&format!("cm-{i}"), "shop"));
        }
        let mut stream = api
            .watch(&WatchParams::default(), "1")
            .await
            .unwrap()
            .boxed();
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Error(e) => assert_eq!(e.code, 410),
            other => panic!("expected 410, got {other:?}"),
        }
    }

    /// A created CustomResourceDefinition is served (discovery and routing) and established.
    #[tokio::test]
    async fn created_crds_become_served_resources() {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        let server = FakeApiServer::kubernetes_only();
        let client = server.client();
        let gone = client.list_api_group_resources("vigil.dev/v1alpha1").await;
        assert!(gone.is_err(), "vigil.dev is not served before its CRDs");
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in vigil_crds::crds() {
            crds.create(&PostParams::default(), &crd).await.unwrap();
        }
        let stored = crds.get("monitoredapps.vigil.dev").await.unwrap();
        let established = stored.status.unwrap().conditions.unwrap();
        assert!(established
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True"));
        let served = client
            .list_api_group_resources("vigil.dev/v1alpha1")
            .await
            .unwrap();
        assert!(served
            .resources
            .iter()
            .any(|r| r.name == "monitoredapps" && r.namespaced));
        let apps: Api<vigil_crds::MonitoredApp> = Api::namespaced(client.clone(), "shop");
        assert!(apps
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty());
        crds.delete("monitoredapps.vigil.dev", &DeleteParams::default())
            .await
            .unwrap();
        assert!(apps.list(&ListParams::default()).await.is_err());
    }
}
