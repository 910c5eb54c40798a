//! How full the result bus is (fetch → count → **NSQ** → DB, seen from /workers): the
//! topic's and our channel's depth and in-flight messages from nsqd's HTTP `/stats`, from
//! `NSQD_HTTP_ADDRESS`, or from every nsqd that nsqlookupd lists for the topic. One small
//! request per nsqd (filtered by topic and channel); any failure reads as "unknown"
//! (`null`), never as an error of the page.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// The bus's state as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BusState {
    /// "memory" or "nsq".
    pub kind: &'static str,
    /// Messages waiting (topic + our channel), summed over nsqds; None = unknown.
    #[schema(required = true)]
    pub depth: Option<u64>,
    /// Messages handed to a listener and not yet finished; None = unknown.
    #[schema(required = true)]
    pub in_flight: Option<u64>,
}

/// Where to ask.
#[derive(Clone, Debug)]
pub struct BusProbe {
    kind: &'static str,
    nsqd_http: Option<String>,
    lookupd: Vec<String>,
    topic: String,
    channel: String,
    client: Option<reqwest::Client>,
}

fn base(addr: &str) -> String {
    let a = addr.trim().trim_end_matches('/');
    if a.starts_with("http://") || a.starts_with("https://") {
        a.to_string()
    } else {
        format!("http://{a}")
    }
}

/// nsqd wraps replies in `{"status_code", "data"}` before 1.0; unwrap either shape.
fn unwrap_data(v: Value) -> Value {
    match v {
        Value::Object(mut m) if m.contains_key("data") && m.contains_key("status_code") => {
            m.remove("data").unwrap_or(Value::Null)
        }
        other => other,
    }
}

/// (depth, in_flight) of `topic`/`channel` in one nsqd `/stats?format=json` reply.
pub fn parse_stats(v: Value, topic: &str, channel: &str) -> Option<(u64, u64)> {
    let v = unwrap_data(v);
    let topics = v.get("topics")?.as_array()?;
    let mut depth = 0;
    let mut in_flight = 0;
    for t in topics
        .iter()
        .filter(|t| t.get("topic_name").and_then(Value::as_str) == Some(topic))
    {
        depth += t.get("depth").and_then(Value::as_u64).unwrap_or(0);
        for c in t
            .get("channels")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|c| c.get("channel_name").and_then(Value::as_str) == Some(channel))
        {
            depth += c.get("depth").and_then(Value::as_u64).unwrap_or(0);
            in_flight += c
                .get("in_flight_count")
                .and_then(Value::as_u64)
                .unwrap_or(0);
        }
    }
    Some((depth, in_flight))
}

/// The nsqd HTTP addresses in one nsqlookupd `/lookup` reply.
pub fn parse_lookup(v: Value) -> Vec<String> {
    let v = unwrap_data(v);
    v.get("producers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let host = p.get("broadcast_address").and_then(Value::as_str)?;
            let port = p.get("http_port").and_then(Value::as_u64)?;
            Some(format!("{host}:{port}"))
        })
        .collect()
}

impl BusProbe {
    /// The in-process bus: nothing to ask.
    pub fn memory() -> BusProbe {
        BusProbe {
            kind: "memory",
            nsqd_http: None,
            lookupd: Vec::new(),
            topic: String::new(),
            channel: String::new(),
            client: None,
        }
    }

    /// NSQ; with neither address the depth stays unknown.
    pub fn nsq(
        nsqd_http: Option<String>,
        lookupd: Vec<String>,
        topic: String,
        channel: String,
    ) -> BusProbe {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .ok();
        BusProbe {
            kind: "nsq",
            nsqd_http: nsqd_http.filter(|a| !a.trim().is_empty()),
            lookupd,
            topic,
            channel,
            client,
        }
    }

    async fn get_json(client: &reqwest::Client, url: &str) -> Option<Value> {
        let res = client.get(url).send().await.ok()?;
        if !res.status().is_success() {
            return None;
        }
        // Not `Response::json`: reqwest's `json` feature is only on for the tests.
        let body = res.bytes().await.ok()?;
        serde_json::from_slice(&body).ok()
    }

    /// Asks nsqd(s) now.
    pub async fn state(&self) -> BusState {
        let unknown = BusState {
            kind: self.kind,
            depth: None,
            in_flight: None,
        };
        let Some(client) = &self.client else {
            return unknown;
        };
        let topic = url::form_urlencoded::byte_serialize(self.topic.as_bytes()).collect::<String>();
        let channel =
            url::form_urlencoded::byte_serialize(self.channel.as_bytes()).collect::<String>();
        let nsqds: Vec<String> = match &self.nsqd_http {
            Some(a) => vec![a.clone()],
            None => {
                let mut all = Vec::new();
                for l in &self.lookupd {
                    let url = format!("{}/lookup?topic={topic}", base(l));
                    if let Some(v) = Self::get_json(client, &url).await {
                        all.extend(parse_lookup(v));
                    }
                }
                all.sort();
                all.dedup();
                all
            }
        };
        if nsqds.is_empty() {
            return unknown;
        }
        let (mut depth, mut in_flight) = (0, 0);
        for n in &nsqds {
            let url = format!(
                "{}/stats?format=json&topic={topic}&channel={channel}",
                base(n)
            );
            match Self::get_json(client, &url)
                .await
                .and_then(|v| parse_stats(v, &self.topic, &self.channel))
            {
                Some((d, f)) => {
                    depth += d;
                    in_flight += f;
                }
                None => return unknown,
            }
        }
        BusState {
            kind: self.kind,
            depth: Some(depth),
            in_flight: Some(in_flight),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stats_sum_topic_and_our_channel_only() {
        let v = json!({"version": "1.3.0", "topics": [
            {"topic_name": "counter", "depth": 2, "channels": [
                {"channel_name": "wordtally", "depth": 5, "in_flight_count": 3},
                {"channel_name": "other", "depth": 100, "in_flight_count": 100}]},
            {"topic_name": "else", "depth": 50, "channels": []}]});
        assert_eq!(parse_stats(v, "counter", "wordtally"), Some((7, 3)));
        let old = json!({"status_code": 200, "status_txt": "OK", "data": {"topics": []}});
        assert_eq!(parse_stats(old, "counter", "wordtally"), Some((0, 0)));
        assert_eq!(parse_stats(json!({"x": 1}), "counter", "wordtally"), None);
    }

    #[test]
    fn lookup_lists_http_addresses() {
        let v = json!({"channels": [], "producers": [
            {"broadcast_address": "nsqd-1", "tcp_port": 4150, "http_port": 4151},
            {"broadcast_address": "nsqd-2", "http_port": 4251}]});
        assert_eq!(parse_lookup(v), vec!["nsqd-1:4151", "nsqd-2:4251"]);
        assert!(parse_lookup(json!({})).is_empty());
        assert_eq!(base("h:1/"), "http://h:1");
    }
}
