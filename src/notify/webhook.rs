//! Sending one webhook delivery (… → DB → **notify**): a signed JSON POST through the SSRF
//! guard. The same guard as the fetcher's (`crate::fetch::guard`): the URL's host is
//! checked before sending, the resolver drops blocked addresses (so the IP connected to is
//! the one checked), and redirects are not followed (a receiver answers where it was
//! registered; following would let a public URL bounce the request inward).

use std::time::Duration;

use reqwest::dns::Resolve;
use url::{Host, Url};

use crate::fetch::guard::Guard;
use crate::store::deliveries::DueDelivery;

use super::sign;

/// How one POST ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The receiver's status, when it answered.
    pub status: Option<u16>,
    /// Why it is not delivered (None for a 2xx).
    pub error: Option<String>,
    /// Retrying cannot help (the SSRF guard refused the target).
    pub permanent: bool,
}

/// Why the sender could not be built (configuration only).
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error(transparent)]
    AllowList(#[from] crate::fetch::InvalidAllowEntry),
    #[error("could not build the webhook HTTP client: {0}")]
    Client(String),
}

/// The webhook HTTP client: one connection pool, the SSRF guard, no redirects.
#[derive(Clone, Debug)]
pub struct Sender {
    client: reqwest::Client,
    guard: Guard,
}

impl Sender {
    /// `allow_private_targets` / `allow_targets` are the fetcher's settings
    /// (`ALLOW_PRIVATE_TARGETS`, `ALLOW_TARGETS`): one policy for every outbound request.
    pub fn new(
        allow_private_targets: bool,
        allow_targets: &[String],
        timeout: Duration,
    ) -> Result<Sender, SenderError> {
        crate::fetch::install_crypto_provider();
        let guard = Guard::new(allow_private_targets, allow_targets, 0)?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("wordtally-webhooks/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(guard.resolver())
            .no_proxy()
            .build()
            .map_err(|e| SenderError::Client(e.to_string()))?;
        Ok(Sender { client, guard })
    }

    /// The SSRF check at creation time: the URL's host (IP literals, `localhost` names), and
    /// for a name, what it resolves to now (the same resolver as at delivery). The answer is
    /// the guard's sentence, which says how to allow a target on purpose.
    pub async fn check_target(&self, url: &Url) -> Result<(), String> {
        self.guard.check_url(url).map_err(|e| e.to_string())?;
        if self.guard.is_disabled() {
            return Ok(());
        }
        if let Some(Host::Domain(name)) = url.host() {
            let name: reqwest::dns::Name = name
                .parse()
                .map_err(|_| format!("{name:?} is not a host name"))?;
            match tokio::time::timeout(Duration::from_secs(5), self.guard.resolver().resolve(name))
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("the host name did not resolve within 5 s".into()),
            }
        }
        Ok(())
    }

    /// POSTs one delivery: the stored body as it is, signed now.
    pub async fn send(&self, d: &DueDelivery, now_ms: i64) -> Sent {
        let url = match Url::parse(&d.url) {
            Ok(u) => u,
            Err(e) => return refused(format!("invalid URL: {e}")),
        };
        // Checked again at every delivery: the allow-list may have changed since creation.
        if let Err(e) = self.guard.check_url(&url) {
            return refused(e.to_string());
        }
        let timestamp = now_ms.div_euclid(1000);
        let signature = sign::header(&d.secret, timestamp, d.body.as_bytes());
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("x-wordtally-event", &d.event)
            .header("x-wordtally-delivery", &d.event_id)
            .header("x-wordtally-signature", signature)
            .body(d.body.clone())
            .send()
            .await;
        match sent {
            Ok(res) => {
                let status = res.status().as_u16();
                // The body is not read: a receiver's answer carries nothing we use.
                drop(res);
                Sent {
                    status: Some(status),
                    error: (!(200..300).contains(&status)).then(|| format!("HTTP {status}")),
                    permanent: false,
                }
            }
            Err(e) => {
                let guard_refused = find_guard_error(&e);
                Sent {
                    status: None,
                    error: Some(match &guard_refused {
                        Some(g) => g.clone(),
                        None => describe(&e),
                    }),
                    permanent: guard_refused.is_some(),
                }
            }
        }
    }
}

fn refused(error: String) -> Sent {
    Sent {
        status: None,
        error: Some(error),
        permanent: true,
    }
}

/// The guard's refusal inside a reqwest error chain, if that is why it failed.
fn find_guard_error(e: &reqwest::Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(g) = err.downcast_ref::<crate::fetch::GuardError>() {
            return Some(g.to_string());
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(g) = inner.downcast_ref::<crate::fetch::GuardError>()
        {
            return Some(g.to_string());
        }
        cur = err.source();
    }
    None
}

/// A short sentence for a failed POST (for the delivery log).
fn describe(e: &reqwest::Error) -> String {
    let mut root: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = root.source() {
        root = next;
    }
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!("could not connect ({root})")
    } else {
        format!("request failed ({root})")
    }
}
