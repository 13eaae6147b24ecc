//! `/openapi.json` is generated from the route table, and every route is in it.

use crate::helpers::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_every_route_and_every_code() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc: Value = browser()
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let routes = gatehouse_http::route_docs();
    assert!(routes.len() >= 20, "{}", routes.len());
    for r in &routes {
        let op = &paths
            .get(r.path)
            .unwrap_or_else(|| panic!("{} missing", r.path))[r.method.to_lowercase()];
        assert!(op.is_object(), "{} {} missing", r.method, r.path);
        assert!(
            !op["responses"].as_object().unwrap().is_empty(),
            "{} {} has no responses",
            r.method,
            r.path
        );
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        routes.len(),
        "the document has exactly the registered routes"
    );
    let codes: Vec<&str> = doc["x-message-codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    for c in gatehouse_domain::Code::ALL {
        assert!(
            codes.contains(&c.as_str()),
            "{c:?} missing from the catalog"
        );
    }
    assert!(
        paths["/api/v1/auth/login"]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["required"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "identifier")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_served() {
    let app = spawn_app(Backend::Sqlite).await;
    let client = browser();
    for r in gatehouse_http::route_docs() {
        let path = r.path.replace("{id}", &uuid::Uuid::now_v7().to_string());
        let method = reqwest::Method::from_bytes(r.method.as_bytes()).unwrap();
        let res = client.request(method, app.url(&path)).send().await.unwrap();
        let status = res.status().as_u16();
        let body = res.text().await.unwrap_or_default();
        // A route that is not wired falls through to 405, or to 404 where no id is involved.
        let unrouted = status == 405 || (status == 404 && !r.path.contains('{'));
        assert!(!unrouted, "{} {} → {status} {body}", r.method, r.path);
        assert!(status < 500, "{} {} → {status} {body}", r.method, r.path);
    }
}
