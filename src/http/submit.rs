//! Submission shared by the form and the JSON API: check the counting options, check each
//! address (a reason per bad line), then hand the good ones to the Submitter, which stores
//! them before queueing. Nothing is stored for a rejected line.

use ractor::rpc::CallResult;

use super::{AppState, Error};
use crate::actors::submitter::{Submission, SubmitterMsg};
use crate::address::normalize_address;
use crate::count::CountOptions;
use crate::model::Task;
use crate::store::NewTask;

/// One line that was not accepted, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Rejected {
    /// 1-based line number in the textarea, or index + 1 in the API's list.
    #[serde(skip)]
    pub line: usize,
    pub address: String,
    pub error: String,
}

#[derive(Debug, Default)]
pub struct SubmitOutcome {
    /// The batch the accepted lines became (None when nothing was accepted).
    pub batch_id: Option<i64>,
    pub accepted: Vec<Task>,
    pub rejected: Vec<Rejected>,
}

/// Longest batch label, in characters.
pub const MAX_LABEL_CHARS: usize = 200;

/// A label as typed: trimmed, empty = none; too long or with control characters = error.
pub fn clean_label(label: Option<&str>) -> Result<Option<String>, Error> {
    let Some(l) = label.map(str::trim).filter(|l| !l.is_empty()) else {
        return Ok(None);
    };
    if l.chars().count() > MAX_LABEL_CHARS {
        return Err(Error::Unprocessable(format!(
            "the label must be at most {MAX_LABEL_CHARS} characters long"
        )));
    }
    if l.chars().any(char::is_control) {
        return Err(Error::Unprocessable(
            "the label must not contain control characters".into(),
        ));
    }
    Ok(Some(l.to_string()))
}

/// Checks and submits `lines` (already split; `skip_blank` drops empty lines, as a
/// textarea's trailing newline is not an address).
pub async fn submit(
    state: &AppState,
    lines: &[String],
    options: CountOptions,
    skip_blank: bool,
    label: Option<&str>,
) -> Result<SubmitOutcome, Error> {
    options.validate_all().map_err(Error::Unprocessable)?;
    let label = clean_label(label)?;
    let candidates: Vec<(usize, &String)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !(skip_blank && l.trim().is_empty()))
        .map(|(i, l)| (i + 1, l))
        .collect();
    if candidates.len() > state.max_submit {
        return Err(Error::TooLarge(format!(
            "too many addresses ({}); at most {} per submission",
            candidates.len(),
            state.max_submit
        )));
    }
    let mut out = SubmitOutcome::default();
    let mut new = Vec::new();
    for (line, raw) in candidates {
        match normalize_address(raw) {
            Ok(url) => new.push(NewTask {
                address: url.to_string(),
                options: options.clone(),
            }),
            Err(e) => out.rejected.push(Rejected {
                line,
                address: display_input(raw),
                error: e.to_string(),
            }),
        }
    }
    metrics::counter!("wordtally_addresses_rejected_total").increment(out.rejected.len() as u64);
    if new.is_empty() {
        return Ok(out);
    }
    // Rate limits before anything is stored (DESIGN §13): over them, nothing is.
    state
        .auth
        .limits()
        .submission(&crate::auth::rate_key(), new.len())
        .map_err(Error::Limited)?;
    let submitter = state.submitter.get().ok_or_else(|| {
        Error::Unavailable("the service is starting or stopping; please retry".into())
    })?;
    let answer = submitter
        .call(
            |reply| {
                SubmitterMsg::Submit(
                    Submission {
                        label,
                        created_by: Some(super::actions::who()),
                        tasks: new,
                    },
                    reply,
                )
            },
            Some(state.submit_timeout),
        )
        .await
        .map_err(|e| Error::Internal(format!("submitter unreachable: {e}")))?;
    match answer {
        CallResult::Success(Ok(done)) => {
            metrics::counter!("wordtally_tasks_submitted_total").increment(done.tasks.len() as u64);
            out.batch_id = done.batch_id;
            out.accepted = done.tasks;
        }
        CallResult::Success(Err(msg)) => return Err(Error::Unavailable(msg)),
        CallResult::Timeout => {
            return Err(Error::Unavailable(
                "the submission took too long; some addresses may have been stored — check the table before retrying"
                    .into(),
            ));
        }
        CallResult::SenderError => {
            return Err(Error::Internal("submitter dropped the request".into()));
        }
    }
    Ok(out)
}

/// The rejected input as shown back: control characters made visible, length bounded.
fn display_input(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .take(200)
        .map(|c| {
            if c.is_control() {
                char::from_u32(0x2400 + (c as u32).min(0x1f)).unwrap_or('\u{fffd}')
            } else {
                c
            }
        })
        .collect();
    if raw.chars().count() > 200 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_input_shows_controls_and_bounds_length() {
        assert_eq!(display_input("a\u{0}b\tc"), "a\u{2400}b\u{2409}c");
        let long = "x".repeat(500);
        assert_eq!(display_input(&long).chars().count(), 201);
    }
}
