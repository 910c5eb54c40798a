//! Access control (DESIGN §13, issue 10), black-box: the real `serve` on port 0 (and, for
//! the start-up refusal and the CLI verbs, the real binary). Each rule has a test that
//! fails without it: signed-out pages → sign-in, API without / with a revoked token → 401,
//! cross-site posts with a valid session → 403 and nothing stored, CSP present, rate limit
//! → 429 + Retry-After, open non-loopback serve refused, sessions survive a restart,
//! sign-in throttled, `wordtally user` / `wordtally token` on a real database.

use std::process::Stdio;

use axum::body::Body;
use axum::http::Request;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, HeaderMap, LOCATION, RETRY_AFTER, SET_COOKIE};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;
use wordtally::config::ServeArgs;
use wordtally::store::Store;

use crate::helpers::{TestApp, TestDb, serve_args};

const PASSWORD: &str = "correct horse battery";

/// A SQLite database with one account `me`.
async fn db_with_account() -> TestDb {
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.expect("open db");
    wordtally::cli::users::add(&store, "me", PASSWORD)
        .await
        .expect("user add");
    store.close().await;
    db
}

fn args(db: &TestDb) -> ServeArgs {
    serve_args(&db.url, 0)
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Signs in through `POST /login` like the form does; returns the `Cookie` header value.
async fn sign_in(app: &TestApp, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[
            ("name", "me"),
            ("password", password),
            ("next", "/tasks"),
        ]))
        .send()
        .await
        .expect("POST /login")
}

fn session_cookie(res: &reqwest::Response) -> String {
    let set = res
        .headers()
        .get(SET_COOKIE)
        .expect("a Set-Cookie")
        .to_str()
        .unwrap()
        .to_string();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Lax"), "{set}");
    set.split(';').next().unwrap().to_string()
}

/// The CSRF token a page hands its forms.
fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("a csrf_token field") + marker.len();
    let end = start + html[start..].find('"').unwrap();
    let token = html[start..end].to_string();
    assert_eq!(token.len(), 64, "a real token: {token:?}");
    token
}

async fn task_count(app: &TestApp) -> i64 {
    app.running.store.stats().await.expect("stats").total()
}

async fn post_tasks(
    app: &TestApp,
    cookie: &str,
    extra: &[(&str, &str)],
    body: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/tasks"))
        .header(COOKIE, cookie)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(body));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.expect("POST /tasks")
}

#[tokio::test]
async fn signed_out_pages_send_to_sign_in_and_the_api_answers_401() {
    let db = db_with_account().await;
    let app = TestApp::start(args(&db)).await;

    let res = app.client.get(app.url("/tasks?q=x")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/login?next=%2Ftasks%3Fq%3Dx");

    // A route nobody listed (the lead's /batches etc. land the same way): covered by prefix.
    let res = app
        .client
        .post(app.url("/tasks/1/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    let res = app
        .client
        .get(app.url("/tasks/table"))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["hx-redirect"], "/login?next=%2Ftasks");

    for path in ["/api/tasks", "/api/tasks/1", "/api/batches/1"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
    }
    let (status, _) = app.submit(json!({ "addresses": ["example.com"] })).await;
    assert_eq!(status, 401);
    assert_eq!(task_count(&app).await, 0);

    // Public: health, metrics, the sign-in page, the assets.
    for path in ["/healthz", "/metrics", "/login", "/static/app.css"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn responses_carry_csp_and_cache_headers() {
    let db = db_with_account().await;
    let app = TestApp::start(args(&db)).await;
    let router = app.running.router();
    let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();

    let res = router.clone().oneshot(get("/login")).await.unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h.contains_key("referrer-policy"));
    assert_eq!(h["cache-control"], "no-store");
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let html = String::from_utf8_lossy(&body);
    assert!(!html.contains("<script>"), "no inline script");
    assert!(html.contains("\"includeIndicatorStyles\":false"));
    // The page links the assets with their version; that URL is cached for good.
    let v = wordtally::auth::headers::asset_version();
    assert!(html.contains(&format!("/static/htmx.min.js?v={v}")));
    let res = router
        .clone()
        .oneshot(get(&format!("/static/htmx.min.js?v={v}")))
        .await
        .unwrap();
    assert!(
        res.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert!(res.headers().contains_key("content-security-policy"));

    // Refusals carry the headers too.
    let res = router.clone().oneshot(get("/tasks")).await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(res.headers().contains_key("content-security-policy"));
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn tokens_open_the_api_and_revoked_tokens_do_not() {
    let db = db_with_account().await;
    let app = TestApp::start(args(&db)).await;
    let store = app.running.store.clone();
    let token = wordtally::cli::tokens::create(&store, "ci", Some("me"))
        .await
        .unwrap();
    let bearer = format!("Bearer {token}");

    // No CSRF token, no session: a token request is exempt and works.
    let res = app
        .client
        .post(app.url("/api/tasks"))
        .header("authorization", &bearer)
        .json(&json!({ "addresses": ["example.com"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .client
        .get(app.url("/api/tasks"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    wordtally::cli::tokens::revoke(&store, "ci").await.unwrap();
    let res = app
        .client
        .get(app.url("/api/tasks"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    let res = app
        .client
        .post(app.url("/api/tasks"))
        .header("authorization", &bearer)
        .json(&json!({ "addresses": ["example.org"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        task_count(&app).await,
        1,
        "the revoked token stored nothing"
    );
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn cross_site_posts_with_a_valid_session_change_nothing() {
    let db = db_with_account().await;
    let app = TestApp::start(args(&db)).await;
    let res = sign_in(&app, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/tasks");
    let cookie = session_cookie(&res);

    let page = app
        .client
        .get(app.url("/tasks"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Sign out"), "the header shows the account");
    let csrf = csrf_of(&html);
    let fields = [
        ("addresses", "example.com"),
        ("word", "python"),
        ("csrf_token", csrf.as_str()),
    ];

    // A forged form on another site: the browser sends the cookie (if it would) and
    // says where the form came from.
    let res = post_tasks(&app, &cookie, &[("origin", "http://evil.example")], &fields).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = post_tasks(&app, &cookie, &[("sec-fetch-site", "cross-site")], &fields).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Same origin but without the token (or a wrong one): refused as well.
    let res = post_tasks(&app, &cookie, &[], &fields[..2]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let wrong = [fields[0], fields[1], ("csrf_token", &"0".repeat(64))];
    let res = post_tasks(&app, &cookie, &[], &wrong).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // htmx sends the token as a header.
    let res = app
        .client
        .post(app.url("/api/tasks"))
        .header(COOKIE, &cookie)
        .json(&json!({ "addresses": ["example.com"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(task_count(&app).await, 0, "nothing was stored");

    // The real form, from our own page.
    let origin = app.base.clone();
    let res = post_tasks(
        &app,
        &cookie,
        &[("origin", &origin), ("sec-fetch-site", "same-origin")],
        &fields,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .client
        .post(app.url("/api/tasks"))
        .header(COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({ "addresses": ["example.org"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(task_count(&app).await, 2);

    // Sign-out ends the session on the server: the cookie no longer works.
    let res = app
        .client
        .post(app.url("/logout"))
        .header(COOKIE, &cookie)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[("csrf_token", &csrf)]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = app
        .client
        .get(app.url("/tasks"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn sessions_survive_a_serve_restart() {
    let db = db_with_account().await;
    let app = TestApp::start(args(&db)).await;
    let cookie = session_cookie(&sign_in(&app, PASSWORD).await);
    app.stop().await;

    let app = TestApp::start(args(&db)).await;
    let res = app
        .client
        .get(app.url("/tasks"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // A made-up cookie is no session.
    let res = app
        .client
        .get(app.url("/tasks"))
        .header(COOKIE, format!("wordtally_session={}", "ab".repeat(32)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn sign_in_is_throttled() {
    let db = db_with_account().await;
    let mut a = args(&db);
    a.auth.login_attempts_per_min = 3;
    let app = TestApp::start(a).await;
    for _ in 0..3 {
        let res = sign_in(&app, "wrong password").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(res.text().await.unwrap().contains("wrong name or password"));
    }
    // Even the right password is refused now, with a time to come back.
    let res = sign_in(&app, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(res.headers().get(SET_COOKIE).is_none());
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn submissions_over_the_rate_get_429_and_store_nothing() {
    // Open (no accounts, loopback): the limit is per client address.
    let db = TestDb::sqlite();
    let mut a = args(&db);
    a.auth.rate_submissions_per_min = 2;
    a.auth.rate_addresses_per_min = 5;
    let app = TestApp::start(a).await;
    let (s, _) = app.submit(json!({ "addresses": ["a.example"] })).await;
    assert_eq!(s, 201);
    let (s, _) = app
        .submit(json!({ "addresses": ["b.example", "c.example", "d.example", "e.example", "f.example"] }))
        .await;
    assert_eq!(s, 429, "5 more addresses exceed 5 a minute");
    let res = app
        .client
        .post(app.url("/api/tasks"))
        .json(&json!({ "addresses": ["g.example"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "third submission"
    );
    assert!(res.headers().contains_key(RETRY_AFTER));
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("too many"),
        "{body}"
    );
    assert_eq!(task_count(&app).await, 1);
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn open_serve_refuses_a_non_loopback_address() {
    let db = TestDb::sqlite();
    let mut a = args(&db);
    a.listen = "0.0.0.0:0".parse().unwrap();
    let err = match wordtally::app::start_serve(a.clone()).await {
        Ok(_) => panic!("an open serve on 0.0.0.0 must not start"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("--insecure-open"), "{err}");
    a.auth.insecure_open = true;
    let app = TestApp::start(a).await;
    app.stop().await;

    // The binary says it in one line and exits non-zero.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wordtally"))
        .args(["serve", "--listen", "0.0.0.0:0", "--workers", "0"])
        .env("DATABASE_URL", &db.url)
        .env_remove("AUTH")
        .env_remove("INSECURE_OPEN")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("wordtally: error:"))
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    assert!(line.contains("refusing to serve on 0.0.0.0:0"), "{line}");
    db.cleanup().await;
}

/// Runs the binary with `args`, `stdin` piped in; returns (success, stdout, stderr).
async fn wordtally(db: &TestDb, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wordtally"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn user_and_token_verbs_on_postgres() {
    let db = TestDb::postgres().await;
    let pw = format!("{PASSWORD}\n");
    let (ok, _, err) = wordtally(&db, &["user", "add", "me", "--password-stdin"], &pw).await;
    assert!(ok, "{err}");
    let (ok, _, err) = wordtally(&db, &["user", "add", "me", "--password-stdin"], &pw).await;
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = wordtally(&db, &["user", "add", "you", "--password-stdin"], "short\n").await;
    assert!(!ok && err.contains("too short"), "{err}");
    let (ok, out, _) = wordtally(&db, &["user", "list"], "").await;
    assert!(ok && out.starts_with("me\t"), "{out}");

    let (ok, out, err) = wordtally(&db, &["token", "create", "ci", "--user", "me"], "").await;
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "only the token on stdout: {out:?}");
    let token = out.trim().to_string();
    assert!(token.starts_with("wt_") && token.len() == 67, "{token}");
    let (ok, out, _) = wordtally(&db, &["token", "list"], "").await;
    assert!(ok && out.contains("ci\tactive\tuser me"), "{out}");
    assert!(
        !out.contains(&token),
        "the secret is not stored, so not listed"
    );

    // The token works against a server on the same database…
    let app = TestApp::start(serve_args(&db.url, 0)).await;
    let get = |t: String| {
        let c = app.client.clone();
        let url = app.url("/api/tasks");
        async move {
            c.get(url)
                .header("authorization", format!("Bearer {t}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(get(token.clone()).await, StatusCode::OK);
    // …until revoked.
    let (ok, _, err) = wordtally(&db, &["token", "revoke", "ci"], "").await;
    assert!(ok, "{err}");
    assert_eq!(get(token.clone()).await, StatusCode::UNAUTHORIZED);
    let (ok, out, _) = wordtally(&db, &["token", "list"], "").await;
    assert!(ok && out.contains("ci\trevoked"), "{out}");

    // passwd: the new password signs in, the old one does not.
    let (ok, _, err) = wordtally(
        &db,
        &["user", "passwd", "me", "--password-stdin"],
        "another password\n",
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        sign_in(&app, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let mut h = HeaderMap::new();
    h.insert(
        CONTENT_TYPE,
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    let res = app
        .client
        .post(app.url("/login"))
        .headers(h)
        .body(form(&[("name", "me"), ("password", "another password")]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    let (ok, _, err) = wordtally(&db, &["user", "remove", "me"], "").await;
    assert!(ok, "{err}");
    let (ok, _, err) = wordtally(&db, &["user", "remove", "me"], "").await;
    assert!(!ok && err.contains("no account"), "{err}");
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn metrics_token_guards_metrics_and_health_stays_public() {
    let db = db_with_account().await;
    let mut a = args(&db);
    a.auth.metrics_token = Some("scrape-secret".into());
    let app = TestApp::start(a).await;
    let metrics = |auth: Option<&'static str>| {
        let mut req = app.client.get(app.url("/metrics"));
        if let Some(v) = auth {
            req = req.header("authorization", v);
        }
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(metrics(None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        metrics(Some("Bearer wrong")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(metrics(Some("Bearer scrape-secret")).await, StatusCode::OK);
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.stop().await;
    db.cleanup().await;
}
