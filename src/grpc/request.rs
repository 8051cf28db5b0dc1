//! A `ReadReq` checked and typed. The combinations KurrentDB serves are
//! the ones accepted — a stream or `$all`, read with a count in either
//! direction or subscribed forwards; filters on `$all` only — anything
//! else is `InvalidArgument`, as the server answers (never a status the
//! clients take for a node failure and reconnect on).

use tonic::Status;

use super::filter::Filter;
use super::proto::streams::read_req::options::{
    all_options::AllOption, stream_options::RevisionOption, uuid_option, CountOption, FilterOption,
    ReadDirection, StreamOption,
};
use super::proto::streams::ReadReq;

/// Where a `$all` read or subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllFrom {
    Start,
    End,
    /// A log position: included by a forwards read, excluded by a
    /// backwards read and by a subscription (as KurrentDB does).
    Position(u64),
}

/// Where a stream read or subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionFrom {
    Start,
    End,
    /// Included by reads, excluded by subscriptions.
    Revision(u64),
}

pub enum Target {
    All(AllFrom),
    Stream { name: String, from: RevisionFrom },
}

pub struct Request {
    pub target: Target,
    pub backwards: bool,
    /// `None`: a catch-up subscription.
    pub count: Option<u64>,
    pub filter: Option<Filter>,
    pub uuid_string: bool,
    /// `ControlOption.compatibility`: 1 or more asks for the stream's last
    /// revision after a stream read.
    pub compatibility: u32,
}

fn invalid(combination: &str) -> Status {
    Status::invalid_argument(format!("The combination of {combination} is invalid."))
}

/// A position as clients send it back: `commit = prepare`, as tidelog
/// gives them (Python sends `prepare := commit`); `u64::MAX` twice is the
/// end. A prepare above its commit, or a value past `i64::MAX`, is no
/// position of any log.
fn position(commit: u64, prepare: u64) -> Result<AllFrom, Status> {
    if commit == u64::MAX && prepare == u64::MAX {
        return Ok(AllFrom::End);
    }
    if prepare > commit || commit > i64::MAX as u64 {
        return Err(Status::invalid_argument(format!(
            "Invalid position: commit {commit}, prepare {prepare} (positions have commit = prepare, below 2^63)"
        )));
    }
    Ok(AllFrom::Position(commit))
}

impl Request {
    pub fn parse(req: ReadReq) -> Result<Self, Status> {
        let options = req
            .options
            .ok_or_else(|| Status::invalid_argument("'options' is a required argument"))?;
        let uuid_string = match options.uuid_option.and_then(|u| u.content) {
            Some(uuid_option::Content::String(_)) => true,
            Some(uuid_option::Content::Structured(_)) => false,
            None => {
                return Err(Status::invalid_argument(
                    "'uuidOption' is a required argument",
                ))
            }
        };
        let backwards = match ReadDirection::try_from(options.read_direction) {
            Ok(ReadDirection::Forwards) => false,
            Ok(ReadDirection::Backwards) => true,
            Err(_) => return Err(Status::invalid_argument("unknown read direction")),
        };
        let count = match options.count_option {
            Some(CountOption::Count(n)) => Some(n),
            Some(CountOption::Subscription(_)) => None,
            None => {
                return Err(Status::invalid_argument(
                    "'countOption' is a required argument",
                ))
            }
        };
        let subscription = count.is_none();
        let filter = match &options.filter_option {
            Some(FilterOption::Filter(f)) => Some(f),
            Some(FilterOption::NoFilter(_)) | None => None,
        };
        let target = match options.stream_option {
            Some(StreamOption::Stream(s)) => {
                let name = s
                    .stream_identifier
                    .map(|i| i.stream_name)
                    .unwrap_or_default();
                let name = String::from_utf8(name.to_vec())
                    .map_err(|_| Status::invalid_argument("the stream name is not UTF-8"))?;
                if name.is_empty() {
                    return Err(Status::invalid_argument(
                        "'streamIdentifier' is a required argument",
                    ));
                }
                let from = match s.revision_option {
                    Some(RevisionOption::Start(_)) | None => RevisionFrom::Start,
                    Some(RevisionOption::End(_)) => RevisionFrom::End,
                    Some(RevisionOption::Revision(r)) => RevisionFrom::Revision(r),
                };
                if filter.is_some() {
                    return Err(invalid("a stream and a filter"));
                }
                if subscription && backwards {
                    return Err(invalid("a stream subscription and backwards"));
                }
                Target::Stream { name, from }
            }
            Some(StreamOption::All(a)) => {
                let from = match a.all_option {
                    Some(AllOption::Start(_)) | None => AllFrom::Start,
                    Some(AllOption::End(_)) => AllFrom::End,
                    Some(AllOption::Position(p)) => {
                        position(p.commit_position, p.prepare_position)?
                    }
                };
                if subscription && backwards {
                    return Err(invalid("an $all subscription and backwards"));
                }
                Target::All(from)
            }
            None => {
                return Err(Status::invalid_argument(
                    "'streamOption' is a required argument",
                ))
            }
        };
        let filter = filter.map(|f| Filter::new(f, subscription)).transpose()?;
        Ok(Self {
            target,
            backwards,
            count,
            filter,
            uuid_string,
            compatibility: options.control_option.map_or(0, |c| c.compatibility),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_commit_equal_prepare_below_2_pow_63_or_the_end() {
        assert_eq!(position(7, 7).unwrap(), AllFrom::Position(7));
        assert_eq!(position(0, 0).unwrap(), AllFrom::Position(0));
        // a prepare below the commit names the commit (lenient)
        assert_eq!(position(7, 3).unwrap(), AllFrom::Position(7));
        assert_eq!(position(u64::MAX, u64::MAX).unwrap(), AllFrom::End);
        for (c, p) in [(3, 7), (u64::MAX - 1, 0), (1 << 63, 1 << 63)] {
            let e = position(c, p).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{c} {p}");
        }
    }
}
