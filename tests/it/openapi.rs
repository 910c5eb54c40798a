//! `GET /api/openapi.json` against the real router: every documented operation is served
//! (a well-formed request gets neither 404 nor 405), and every route that src/http
//! registers under `/api` (plus `/healthz`) is documented — read from the source, so a
//! new `.route("/api/...")` without `#[utoipa::path]` fails here.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDb, serve_args};

/// `(METHOD, path)` of every route registered in src/http whose path is under `/api/` or is
/// `/healthz`, read from the `.route("…", get(…).post(…))` calls.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("read src/http") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source file");
        // A call may be split over lines by rustfmt: join everything, then split on it.
        let joined: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for piece in joined.split(".route(\"").skip(1) {
            let Some((route, rest)) = piece.split_once('"') else {
                continue;
            };
            if !(route.starts_with("/api/") || route == "/healthz") {
                continue;
            }
            // The method router runs up to the `)` closing `.route(`.
            let mut depth = 1;
            let mut end = rest.len();
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let methods = &rest[..end];
            let mut found = false;
            for m in ["get", "post", "put", "patch", "delete"] {
                let called = methods.starts_with(&format!(", {m}("))
                    || methods.contains(&format!(".{m}("))
                    || methods.contains(&format!("routing::{m}("));
                if called {
                    found = true;
                    out.insert((m.to_uppercase(), route.to_string()));
                }
            }
            assert!(
                found,
                "{}: cannot read the methods of route {route}: {methods}",
                path.display()
            );
        }
    }
    out
}

/// `(METHOD, path)` of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().expect("path item") {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn document_matches_the_router() {
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 0)).await;

    let res = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .expect("GET /api/openapi.json");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap_or_default()
            .starts_with("application/json")
    );
    let doc: Value = res.json().await.expect("document is JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.1"),
        "not OpenAPI 3.1: {}",
        doc["openapi"]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    // Regions, patterns and the count filters (issue 20) are described.
    let create = &doc["components"]["schemas"]["CreateTasks"]["properties"];
    for field in ["within", "outside", "patterns"] {
        assert!(
            create.get(field).is_some(),
            "CreateTasks lacks {field}: {create}"
        );
    }
    let params: Vec<&str> = doc["paths"]["/api/tasks"]["get"]["parameters"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    for p in ["contains", "absent"] {
        assert!(params.contains(&p), "GET /api/tasks lacks ?{p}: {params:?}");
    }

    // Both directions: the source's routes are documented, the document's are served.
    let documented = operations(&doc);
    let mut in_source = routes_in_source();
    assert!(
        in_source.len() >= 15,
        "route scan found too few: {in_source:?}"
    );
    in_source.insert(("GET".into(), "/api/openapi.json".into()));
    let undocumented: Vec<_> = in_source.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the document: {undocumented:?}"
    );
    let unrouted: Vec<_> = documented.difference(&in_source).collect();
    assert!(
        unrouted.is_empty(),
        "documented but not in src/http: {unrouted:?}"
    );

    // Real ids, so a 404 can only mean the router lacks the route.
    let (code, created) = app
        .submit(json!({ "addresses": ["http://example.com/"], "label": "openapi" }))
        .await;
    assert_eq!(code, 201, "{created}");
    let task = created["tasks"][0]["id"].as_i64().expect("task id");
    let batch = created["batch_id"].as_i64().expect("batch id");

    // DELETE last: it removes the batch the other requests use.
    let mut ops: Vec<_> = documented.iter().collect();
    ops.sort_by_key(|(m, _)| m == "DELETE");
    for (method, path) in ops {
        let id = if path.starts_with("/api/batches/") {
            batch
        } else {
            task
        };
        let url = app.url(&path.replace("{id}", &id.to_string()));
        let req = match method.as_str() {
            "GET" => app.client.get(&url),
            "POST" => app.client.post(&url).json(&json!({})),
            "DELETE" => app.client.delete(&url),
            other => panic!("unexpected method {other}"),
        };
        // POST /api/tasks needs its required field; the others take `{}` or no body.
        let req = if path == "/api/tasks" && method == "POST" {
            app.client
                .post(&url)
                .json(&json!({ "addresses": ["http://example.org/"] }))
        } else {
            req
        };
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        assert!(
            status != 404 && status != 405,
            "{method} {path} answered {status}: the document names a route the router lacks"
        );
        // Every answer is one the document lists for the operation.
        let op = &doc["paths"][path.as_str()][method.to_lowercase()];
        assert!(
            op["responses"].get(status.to_string()).is_some(),
            "{method} {path} answered {status}, which the document does not list"
        );
    }

    app.stop().await;
    db.cleanup().await;
}

/// The header's "JSON API" link opens a page rendering the document: Swagger UI, every file
/// from our origin (the strict CSP allows no inline script and no CDN), started by our own
/// initializer pointed at `/api/openapi.json`.
#[tokio::test]
async fn the_api_reference_page_renders_the_document_under_the_csp() {
    let db = TestDb::sqlite();
    let app = TestApp::start(serve_args(&db.url, 0)).await;
    let get = |path: &str| app.client.get(app.url(path)).send();

    let home = get("/tasks").await.expect("GET /tasks");
    let home = home.text().await.expect("body");
    assert!(
        home.contains(r#"<a href="/api-docs/">JSON API</a>"#),
        "the header links the reference page"
    );

    let res = get("/api-docs/").await.expect("GET /api-docs/");
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let page = res.text().await.expect("page");
    // Every <script> has a src, every src and href is ours.
    let scripts: Vec<&str> = page.split("<script").skip(1).collect();
    assert_eq!(scripts.len(), 2, "{page}");
    for s in &scripts {
        assert!(
            s.trim_start().starts_with("src=\"/"),
            "inline or foreign script: {s}"
        );
        assert!(s.contains("></script>"), "a script with a body: {s}");
    }
    let mut refs = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for piece in page.split(attr).skip(1) {
            let r = piece.split('"').next().unwrap_or_default();
            assert!(r.starts_with('/'), "not from our origin: {r}");
            refs.push(r.to_owned());
        }
    }
    for (path, kind) in [
        ("/api-docs/swagger-ui-bundle.js", "javascript"),
        ("/api-docs/api-docs.js", "javascript"),
        ("/api-docs/swagger-ui.css", "text/css"),
        ("/api-docs/favicon-32x32.png", "image/png"),
    ] {
        assert!(
            refs.iter().any(|r| r == path),
            "{path} referenced by the page"
        );
        let res = get(path).await.expect(path);
        assert_eq!(res.status(), 200, "{path}");
        let ct = res.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        assert!(ct.contains(kind), "{path}: {ct}");
        let body = res.bytes().await.expect("asset body");
        assert!(
            body.len() > 100,
            "{path} is the real file ({} bytes)",
            body.len()
        );
    }
    let init = get("/api-docs/api-docs.js")
        .await
        .expect("init")
        .text()
        .await
        .expect("js");
    assert!(
        init.contains("\"/api/openapi.json\"") && init.contains("SwaggerUIBundle"),
        "{init}"
    );
    let bundle = get("/api-docs/swagger-ui-bundle.js").await.expect("bundle");
    assert!(bundle.text().await.expect("js").contains("SwaggerUIBundle"));

    // Only the files the page uses; no source maps, no traversal, no oauth page.
    for path in [
        "/api-docs/swagger-ui-bundle.js.map",
        "/api-docs/index.html",
        "/api-docs/oauth2-redirect.html",
        "/api-docs/..%2F..%2FCargo.toml",
        "/api-docs/nothing.js",
    ] {
        let res = get(path).await.expect(path);
        assert_eq!(res.status(), 404, "{path}");
    }
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(app.url("/api-docs"))
        .send()
        .await
        .expect("GET /api-docs");
    assert_eq!(bare.status(), 308);
    assert_eq!(bare.headers()["location"], "/api-docs/");
    app.stop().await;
}
