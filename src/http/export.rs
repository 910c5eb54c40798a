//! Exports (DB → **poll**, in bulk): `GET /api/tasks/export?format=csv|jsonl` with the
//! table's filters (`batch`, `status`, `outcome`, `q`). The body is streamed a thousand
//! rows at a time by keyset paging, oldest first, so memory stays constant however many
//! rows match (DESIGN §9).
//!
//! CSV columns, in this order (a header row first):
//! `id,address,status,outcome,words_count,http_status_code,error,batch_id,run,word,
//! case_sensitive,whole_word,scope,final_url,content_type,charset,bytes_read,truncated,
//! duration_ms,attempts,submitted_at,finished_at,counts,depth,found_on` — times are epoch
//! milliseconds, empty cells are unknown/none, `counts` is the per-word counts as a JSON
//! object, `depth` and `found_on` are a crawl's (DESIGN §15; empty for listed addresses).
//! An export of one batch that counts several words (or patterns) adds one `count:WORD`
//! column per word and pattern after them.
//! `words_count` is always the first word's. JSON Lines: one object per task, as `GET /api/tasks/{id}`
//! without history.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream;
use serde::Deserialize;

use super::api::{ApiError, TaskJson};
use super::tasks::{ListQuery, nonempty};
use super::{AppState, Error};
use crate::model::TaskView;
use crate::store::{CHUNK, Store, TaskFilter};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/tasks/export", get(export))
}

/// The CSV header; the first seven columns are a contract.
pub const CSV_HEADER: &str = "id,address,status,outcome,words_count,http_status_code,error,\
batch_id,run,word,case_sensitive,whole_word,scope,final_url,content_type,charset,bytes_read,\
truncated,duration_ms,attempts,submitted_at,finished_at,counts,depth,found_on";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Csv,
    Jsonl,
}

#[derive(Debug, Deserialize)]
struct ExportParams {
    format: Option<String>,
    #[serde(flatten)]
    q: ListQuery,
}

/// Every matching task, oldest first, streamed as CSV (a header row first) or JSON Lines.
#[utoipa::path(get, path = "/api/tasks/export", tag = "tasks",
    params(super::openapi::FilterParams, super::openapi::FormatParam),
    responses(
        (status = 200, description = "The export (an attachment)", content(
            (String = "text/csv"),
            (String = "application/x-ndjson"),
        )),
        (status = 400, description = "A filter or the format is malformed", body = super::error::ErrorBody),
    ))]
async fn export(
    State(state): State<AppState>,
    params: Result<Query<ExportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| Error::BadRequest(e.body_text()))?;
    let format = match nonempty(&p.format).map(str::to_ascii_lowercase).as_deref() {
        None | Some("csv") => Format::Csv,
        Some("jsonl") | Some("ndjson") => Format::Jsonl,
        Some(other) => {
            return Err(
                Error::BadRequest(format!("unknown format {other:?}: use csv or jsonl")).into(),
            );
        }
    };
    let mut filter = p.q.filter(CHUNK as i64)?;
    if filter.before.is_some() || filter.after.is_some() {
        return Err(Error::BadRequest(
            "exports take no `before`/`after`: they cover every matching task".into(),
        )
        .into());
    }
    filter.oldest_first = true;
    let name = match filter.batch {
        Some(b) => format!("wordtally-batch-{b}"),
        None => "wordtally-tasks".to_string(),
    };
    let (ctype, ext) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Jsonl => ("application/x-ndjson", "jsonl"),
    };
    // One column per word when the export is one batch that counts several.
    let words = match filter.batch {
        Some(b) => state
            .store
            .get_batch(b)
            .await
            .map_err(Error::from)?
            // Words and patterns (DESIGN §17): a column per key when there are several.
            .map(|b| b.options.count_keys())
            .filter(|keys| keys.len() > 1)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let body = Body::from_stream(rows(state.store.clone(), filter, format, words));
    Ok((
        [
            (header::CONTENT_TYPE, ctype.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.{ext}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}

/// The export as a stream of chunks: the header, then a thousand rows per chunk. A
/// database error mid-stream ends the body early (the client sees a broken transfer, not
/// a silently short file: the connection is closed without the final chunk).
fn rows(
    store: Store,
    filter: TaskFilter,
    format: Format,
    words: Vec<String>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    struct St {
        store: Store,
        filter: TaskFilter,
        format: Format,
        words: Vec<String>,
        header_sent: bool,
        done: bool,
    }
    let st = St {
        store,
        filter,
        format,
        words,
        header_sent: false,
        done: false,
    };
    stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        if !st.header_sent {
            st.header_sent = true;
            if st.format == Format::Csv {
                let mut h = CSV_HEADER.to_string();
                for w in &st.words {
                    h.push(',');
                    push_csv_field(&mut h, &format!("count:{w}"));
                }
                h.push_str("\r\n");
                return Some((Ok(Bytes::from(h)), st));
            }
        }
        match st.store.list_tasks(&st.filter).await {
            Err(e) => {
                tracing::error!(error = %e, "export stopped by a database error");
                st.done = true;
                Some((
                    Err(std::io::Error::other("database error during export")),
                    st,
                ))
            }
            Ok(views) if views.is_empty() => None,
            Ok(views) => {
                if (views.len() as i64) < st.filter.limit {
                    st.done = true;
                }
                st.filter.after = views.last().map(|v| v.task.id);
                let mut out = String::with_capacity(views.len() * 200);
                for v in views {
                    match st.format {
                        Format::Csv => csv_row(&mut out, &v, &st.words),
                        Format::Jsonl => {
                            let j = TaskJson::from(v);
                            if let Ok(line) = serde_json::to_string(&j) {
                                out.push_str(&line);
                                out.push('\n');
                            }
                        }
                    }
                }
                Some((Ok(Bytes::from(out)), st))
            }
        }
    })
}

/// One CSV record (RFC 4180: quoted when needed, CRLF line ends).
pub fn csv_row(out: &mut String, v: &TaskView, words: &[String]) {
    let t = &v.task;
    let r = v.result.as_ref();
    let counts = r.and_then(|r| r.counts.as_ref());
    let fields: [String; 25] = [
        t.id.to_string(),
        t.address.clone(),
        t.status.as_str().to_string(),
        t.outcome
            .map(|o| o.as_str().to_string())
            .unwrap_or_default(),
        opt(r.and_then(|r| r.words_count)),
        opt(r.and_then(|r| r.http_status_code)),
        r.and_then(|r| r.error.clone()).unwrap_or_default(),
        opt(t.batch_id),
        t.run.to_string(),
        t.options.word.clone(),
        t.options.case_sensitive.to_string(),
        t.options.whole_word.to_string(),
        t.options.scope.as_str().to_string(),
        r.and_then(|r| r.final_url.clone()).unwrap_or_default(),
        r.and_then(|r| r.content_type.clone()).unwrap_or_default(),
        r.and_then(|r| r.charset.clone()).unwrap_or_default(),
        opt(r.map(|r| r.bytes_read)),
        opt(r.map(|r| r.truncated)),
        opt(r.map(|r| r.duration_ms)),
        opt(r.map(|r| r.attempts)),
        t.timestamp.to_string(),
        opt(r.map(|r| r.timestamp)),
        counts
            .and_then(|c| serde_json::to_string(c).ok())
            .unwrap_or_default(),
        opt(t.depth),
        opt(t.found_on),
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_csv_field(out, f);
    }
    for w in words {
        out.push(',');
        out.push_str(&opt(counts.and_then(|c| c.get(w))));
    }
    out.push_str("\r\n");
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// Quotes a field when it holds a separator, a quote or a line break. A field that a
/// spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) is quoted with a leading
/// `'`, so opening an export never executes what a web page put in an error message.
fn push_csv_field(out: &mut String, f: &str) {
    let formula = f.starts_with(['=', '+', '-', '@']) && f.parse::<f64>().is_err();
    if formula || f.contains([',', '"', '\n', '\r']) {
        out.push('"');
        if formula {
            out.push('\'');
        }
        out.push_str(&f.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        let mut s = String::new();
        push_csv_field(&mut s, "plain");
        s.push('|');
        push_csv_field(&mut s, "a,b \"c\"\nd");
        s.push('|');
        push_csv_field(&mut s, "=HYPERLINK(\"x\")");
        s.push('|');
        push_csv_field(&mut s, "-3");
        assert_eq!(
            s,
            "plain|\"a,b \"\"c\"\"\nd\"|\"'=HYPERLINK(\"\"x\"\")\"|-3"
        );
    }

    #[test]
    fn header_starts_with_the_contract_columns() {
        assert!(
            CSV_HEADER.starts_with("id,address,status,outcome,words_count,http_status_code,error,")
        );
        assert_eq!(CSV_HEADER.split(',').count(), 23);
    }
}
