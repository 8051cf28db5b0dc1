//! Server-side filters of `$all` reads and subscriptions, as KurrentDB
//! applies them: on the stream name or on the event type, by prefixes
//! (`starts with` any) or by a regular expression searched anywhere in the
//! name (.NET `Regex.Match`, unanchored). Clients send .NET expressions —
//! Python's default filter is a negative look-ahead — so they are
//! compiled by `fancy-regex`, with a bound on backtracking.

use tonic::Status;

use super::log::LogEvent;
use super::proto::streams::read_req::options::filter_options::{Filter as On, Window};
use super::proto::streams::read_req::options::FilterOptions;

/// KurrentDB's read batch: the search window when a client names none.
const DEFAULT_WINDOW: u64 = 32;
/// Backtracking steps one match may take (a pathological expression fails
/// the request instead of holding a core).
const BACKTRACK_LIMIT: usize = 100_000;
/// Longest expression accepted.
const MAX_PATTERN: usize = 4096;

pub struct Filter {
    on_type: bool,
    expr: Expr,
    /// A filtered subscription's checkpoints come every this many events
    /// scanned (matching or not).
    pub checkpoint_every: u64,
}

enum Expr {
    Prefixes(Vec<String>),
    Regex(Box<fancy_regex::Regex>),
    Anything,
}

impl Filter {
    pub fn new(options: &FilterOptions, subscription: bool) -> Result<Self, Status> {
        let (on_type, expression) = match &options.filter {
            Some(On::StreamIdentifier(e)) => (false, e),
            Some(On::EventType(e)) => (true, e),
            None => {
                return Err(Status::invalid_argument(
                    "a filter names no stream or event type",
                ))
            }
        };
        let expr = if !expression.regex.is_empty() {
            if expression.regex.len() > MAX_PATTERN {
                return Err(Status::invalid_argument(
                    "the filter's expression is too long",
                ));
            }
            let regex = fancy_regex::RegexBuilder::new(&expression.regex)
                .backtrack_limit(BACKTRACK_LIMIT)
                .build()
                .map_err(|e| {
                    Status::invalid_argument(format!(
                        "the filter's expression {:?} is not a regular expression tidelog can run: {e}",
                        expression.regex
                    ))
                })?;
            Expr::Regex(Box::new(regex))
        } else if !expression.prefix.is_empty() {
            Expr::Prefixes(expression.prefix.clone())
        } else {
            Expr::Anything
        };
        let window = match options.window {
            Some(Window::Max(max)) if max > 0 => u64::from(max),
            _ => DEFAULT_WINDOW,
        };
        let multiplier = u64::from(options.checkpoint_interval_multiplier);
        if subscription && multiplier == 0 {
            return Err(Status::invalid_argument(
                "checkpointIntervalMultiplier must be greater than 0",
            ));
        }
        Ok(Self {
            on_type,
            expr,
            checkpoint_every: window.saturating_mul(multiplier.max(1)),
        })
    }

    /// Whether the event passes; an expression that exceeds its bound
    /// fails the request.
    pub fn matches(&self, event: &LogEvent) -> Result<bool, Status> {
        let subject = if self.on_type {
            event.event_type.as_str()
        } else {
            event.stream.as_str()
        };
        match &self.expr {
            Expr::Anything => Ok(true),
            Expr::Prefixes(prefixes) => {
                Ok(prefixes.iter().any(|p| subject.starts_with(p.as_str())))
            }
            Expr::Regex(regex) => regex.is_match(subject).map_err(|e| {
                Status::invalid_argument(format!(
                    "the filter's expression could not be run on {subject:?}: {e}"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::proto::streams::read_req::options::filter_options::Expression;

    fn event(stream: &str, ty: &str) -> LogEvent {
        LogEvent {
            position: 1,
            stream: stream.into(),
            sequence: 1,
            event_type: ty.into(),
            data: Default::default(),
            metadata: Default::default(),
            created_ticks: 0,
            id: uuid::Uuid::nil(),
            encoded: Default::default(),
        }
    }

    fn filter(on_type: bool, regex: &str, prefix: &[&str]) -> Result<Filter, Status> {
        let e = Expression {
            regex: regex.into(),
            prefix: prefix.iter().map(|p| p.to_string()).collect(),
        };
        Filter::new(
            &FilterOptions {
                filter: Some(if on_type {
                    On::EventType(e)
                } else {
                    On::StreamIdentifier(e)
                }),
                window: Some(Window::Max(30)),
                checkpoint_interval_multiplier: 5,
            },
            true,
        )
    }

    #[test]
    fn prefixes_regexes_and_pythons_default_look_ahead() {
        let f = filter(false, "", &["ChatRoom-", "Wallet-"]).unwrap();
        assert!(f.matches(&event("ChatRoom-1", "X")).unwrap());
        assert!(!f.matches(&event("Account-1", "X")).unwrap());
        assert_eq!(f.checkpoint_every, 150);
        // unanchored, as .NET's Regex.Match
        let f = filter(true, "Posted", &[]).unwrap();
        assert!(f.matches(&event("ChatRoom-1", "MessagePosted")).unwrap());
        // kurrentdbclient's default: everything but system events
        let f = filter(true, r"^(?!(\$.+$|PersistentConfig\d+$|Result$))", &[]).unwrap();
        assert!(f.matches(&event("ChatRoom-1", "MessagePosted")).unwrap());
        assert!(!f.matches(&event("$stats", "$statsCollected")).unwrap());
        assert!(filter(true, "(", &[]).is_err());
    }
}
