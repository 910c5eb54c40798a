//! The sign-in page (`GET /login`, `POST /login`) and sign-out (`POST /logout`): where a
//! person gets the session that lets them submit and poll. Attempts are throttled per
//! account name and per client address; a wrong name and a wrong password get the same
//! answer in the same time.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::{AppState, Error};
use crate::auth::{current_client, password, session};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(page).post(sign_in))
        .route("/logout", post(sign_out))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<String>,
    name: String,
    next: String,
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

/// Where to go after signing in: only a path on this site (no `//host`, no scheme), so
/// the sign-in page cannot be used to send people elsewhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/tasks".to_string(),
    }
}

fn render(status: StatusCode, page: LoginPage) -> Result<Response, Error> {
    let html = page
        .render()
        .map_err(|e| Error::Internal(format!("template: {e}")))?;
    Ok((status, Html(html)).into_response())
}

async fn page(Query(q): Query<LoginQuery>) -> Result<Response, Error> {
    render(
        StatusCode::OK,
        LoginPage {
            error: None,
            name: String::new(),
            next: safe_next(q.next.as_deref()),
        },
    )
}

async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, Error> {
    let next = safe_next(f.next.as_deref());
    let name = f.name.trim().to_string();
    let again = |error: String| LoginPage {
        error: Some(error),
        name: name.clone(),
        next: next.clone(),
    };
    if let Err(limited) = state.auth.limits().login(&name, current_client()) {
        tracing::warn!(account = %name, "sign-in throttled");
        let mut res = render(StatusCode::TOO_MANY_REQUESTS, again(limited.to_string()))?;
        if let Ok(v) = HeaderValue::from_str(&limited.retry_after_secs.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(res);
    }
    let store = state.auth.store();
    let stored = store.account_password(&name).await?;
    let hash = stored.as_ref().map(|(_, h)| h.clone());
    let password = f.password;
    // Argon2 takes tens of milliseconds of CPU: off the async threads.
    let ok = tokio::task::spawn_blocking(move || password::verify(&password, hash.as_deref()))
        .await
        .unwrap_or(false);
    let Some((account_id, _)) = stored.filter(|_| ok) else {
        tracing::info!(account = %name, "sign-in refused");
        return render(
            StatusCode::UNAUTHORIZED,
            again("wrong name or password".into()),
        );
    };
    let ttl = state.auth.session_ttl();
    let cookie = session::start(store, account_id, ttl).await?;
    tracing::info!(account = %name, "signed in");
    let mut res = StatusCode::SEE_OTHER.into_response();
    let h = res.headers_mut();
    h.insert(
        header::SET_COOKIE,
        session::set_cookie(&cookie, ttl, session::behind_tls(&headers)),
    );
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&next).unwrap_or_else(|_| HeaderValue::from_static("/tasks")),
    );
    Ok(res)
}

async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Error> {
    if let Some(cookie) = session::cookie_value(&headers) {
        session::end(state.auth.store(), &cookie).await?;
    }
    let mut res = StatusCode::SEE_OTHER.into_response();
    let h = res.headers_mut();
    h.insert(
        header::SET_COOKIE,
        session::clear_cookie(session::behind_tls(&headers)),
    );
    h.insert(header::LOCATION, HeaderValue::from_static("/login"));
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/tasks?q=x")), "/tasks?q=x");
        assert_eq!(safe_next(Some("//evil.example/")), "/tasks");
        assert_eq!(safe_next(Some("https://evil.example/")), "/tasks");
        assert_eq!(safe_next(Some("/\\evil.example")), "/tasks");
        assert_eq!(safe_next(None), "/tasks");
    }
}
