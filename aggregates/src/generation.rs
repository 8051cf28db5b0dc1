//! A paid generation (seed 002's `/api/proxy/*`): its points are held on
//! the owner's wallet before the upstream is called (the wallet's `Hold`,
//! named by the job id); the job records what the upstream said and ends
//! once — `GenerationCompleted` or `GenerationFailed` — and then records
//! that its hold was settled or released (`GenerationSettled`). Whoever
//! decides (the request's stream, the poller, the deadline) can only
//! decide an open job, so a second poller or a late stream end repeats
//! nothing.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::bounded_text;

/// What is generated, and by which upstream protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GenerationKind {
    /// video, GrsAI `/v1/video/sora-video`
    Sora,
    /// picture, GrsAI `/v1/draw/nano-banana`
    Banana,
    /// a cat companion's reply, an OpenAI-compatible chat completion
    Chat,
    /// Jimeng through the Volcengine visual API (`req_key` in the model)
    JimengVideo,
    JimengImage,
}

impl GenerationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sora => "sora",
            Self::Banana => "banana",
            Self::Chat => "chat",
            Self::JimengVideo => "jimeng_video",
            Self::JimengImage => "jimeng_image",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "sora" => Some(Self::Sora),
            "banana" => Some(Self::Banana),
            "chat" => Some(Self::Chat),
            "jimeng_video" => Some(Self::JimengVideo),
            "jimeng_image" => Some(Self::JimengImage),
            _ => None,
        }
    }
    /// How the job shows in the owner's point history.
    pub fn description(self) -> &'static str {
        match self {
            Self::Sora => "Sora 视频生成",
            Self::Banana => "Banana 图片生成",
            Self::Chat => "猫猫对话",
            Self::JimengVideo => "即梦视频生成",
            Self::JimengImage => "即梦图片生成",
        }
    }
}

/// A prompt: 1–4,000 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt(String);

impl Prompt {
    pub const MAX_CHARS: usize = 4_000;
    pub fn parse(raw: &str) -> Result<Self, crate::values::InvalidValue> {
        bounded_text(raw, "prompt", Self::MAX_CHARS, false, true).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug)]
pub enum GenerationCommand {
    /// The points are held already (hold id = job id).
    Request {
        owner: Uuid,
        kind: GenerationKind,
        model: String,
        prompt: Prompt,
        price: i64,
        deadline: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The upstream took the task under its id.
    RecordSubmission {
        upstream_id: String,
        at: DateTime<Utc>,
    },
    RecordProgress {
        progress: u8,
        at: DateTime<Utc>,
    },
    Complete {
        result_url: String,
        at: DateTime<Utc>,
    },
    Fail {
        reason: String,
        at: DateTime<Utc>,
    },
    /// The hold was settled (completed) or released (failed).
    RecordSettlement {
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum GenerationEvent {
    GenerationRequested {
        owner: Uuid,
        kind: GenerationKind,
        model: String,
        prompt: String,
        price: i64,
        deadline: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    GenerationSubmitted {
        upstream_id: String,
        at: DateTime<Utc>,
    },
    GenerationProgressed {
        progress: u8,
        at: DateTime<Utc>,
    },
    GenerationCompleted {
        result_url: String,
        at: DateTime<Utc>,
    },
    GenerationFailed {
        reason: String,
        at: DateTime<Utc>,
    },
    GenerationSettled {
        /// `settled` (paid) or `released` (returned)
        outcome: String,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for GenerationEvent {
    fn event_type(&self) -> String {
        match self {
            Self::GenerationRequested { .. } => "GenerationRequested",
            Self::GenerationSubmitted { .. } => "GenerationSubmitted",
            Self::GenerationProgressed { .. } => "GenerationProgressed",
            Self::GenerationCompleted { .. } => "GenerationCompleted",
            Self::GenerationFailed { .. } => "GenerationFailed",
            Self::GenerationSettled { .. } => "GenerationSettled",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerationError {
    #[error("no such job")]
    UnknownJob,
    #[error("the job has not ended")]
    Open,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
enum Stage {
    #[default]
    New,
    Requested,
    Submitted,
    Completed,
    Failed,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct GenerationJob {
    stage: Stage,
    progress: u8,
    settled: bool,
}

impl GenerationJob {
    fn open(&self) -> bool {
        matches!(self.stage, Stage::Requested | Stage::Submitted)
    }
}

impl Aggregate for GenerationJob {
    const TYPE: &'static str = "GenerationJob";
    type Command = GenerationCommand;
    type Event = GenerationEvent;
    type Error = GenerationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        use GenerationCommand as C;
        use GenerationEvent as E;
        if !matches!(command, C::Request { .. }) && self.stage == Stage::New {
            return Err(GenerationError::UnknownJob);
        }
        let event = match command {
            C::Request {
                owner,
                kind,
                model,
                prompt,
                price,
                deadline,
                at,
            } => {
                if self.stage != Stage::New {
                    return Ok(());
                }
                E::GenerationRequested {
                    owner,
                    kind,
                    model,
                    prompt: prompt.0,
                    price,
                    deadline,
                    at,
                }
            }
            C::RecordSubmission { upstream_id, at } => {
                if self.stage != Stage::Requested {
                    return Ok(());
                }
                E::GenerationSubmitted { upstream_id, at }
            }
            C::RecordProgress { progress, at } => {
                let progress = progress.min(99);
                if !self.open() || progress <= self.progress {
                    return Ok(());
                }
                E::GenerationProgressed { progress, at }
            }
            C::Complete { result_url, at } => {
                if !self.open() {
                    return Ok(());
                }
                E::GenerationCompleted { result_url, at }
            }
            C::Fail { reason, at } => {
                if !self.open() {
                    return Ok(());
                }
                E::GenerationFailed { reason, at }
            }
            C::RecordSettlement { at } => {
                if self.open() {
                    return Err(GenerationError::Open);
                }
                if self.settled {
                    return Ok(());
                }
                let outcome = if self.stage == Stage::Completed {
                    "settled"
                } else {
                    "released"
                };
                E::GenerationSettled {
                    outcome: outcome.into(),
                    at,
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use GenerationEvent as E;
        match event {
            E::GenerationRequested { .. } => self.stage = Stage::Requested,
            E::GenerationSubmitted { .. } => self.stage = Stage::Submitted,
            E::GenerationProgressed { progress, .. } => self.progress = progress,
            E::GenerationCompleted { .. } => {
                self.stage = Stage::Completed;
                self.progress = 100;
            }
            E::GenerationFailed { .. } => self.stage = Stage::Failed,
            E::GenerationSettled { .. } => self.settled = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn requested() -> GenerationEvent {
        GenerationEvent::GenerationRequested {
            owner: Uuid::nil(),
            kind: GenerationKind::Sora,
            model: "sora-2".into(),
            prompt: "a cat".into(),
            price: 100,
            deadline: at(),
            at: at(),
        }
    }

    #[test]
    fn a_job_ends_once_whoever_decides_and_settles_once() {
        let completed = GenerationEvent::GenerationCompleted {
            result_url: "https://cdn/x.mp4".into(),
            at: at(),
        };
        TestFramework::<GenerationJob>::with(())
            .given(vec![requested()])
            .when(GenerationCommand::Complete {
                result_url: "https://cdn/x.mp4".into(),
                at: at(),
            })
            .then_expect_events(vec![completed.clone()]);
        // a late failure (a second poller, the deadline) changes nothing
        TestFramework::<GenerationJob>::with(())
            .given(vec![requested(), completed.clone()])
            .when(GenerationCommand::Fail {
                reason: "deadline".into(),
                at: at(),
            })
            .then_expect_events(vec![]);
        TestFramework::<GenerationJob>::with(())
            .given(vec![requested()])
            .when(GenerationCommand::RecordSettlement { at: at() })
            .then_expect_error(GenerationError::Open);
        let settled = GenerationEvent::GenerationSettled {
            outcome: "settled".into(),
            at: at(),
        };
        TestFramework::<GenerationJob>::with(())
            .given(vec![requested(), completed.clone()])
            .when(GenerationCommand::RecordSettlement { at: at() })
            .then_expect_events(vec![settled.clone()]);
        TestFramework::<GenerationJob>::with(())
            .given(vec![requested(), completed, settled])
            .when(GenerationCommand::RecordSettlement { at: at() })
            .then_expect_events(vec![]);
        TestFramework::<GenerationJob>::with(())
            .given(vec![
                requested(),
                GenerationEvent::GenerationFailed {
                    reason: "upstream".into(),
                    at: at(),
                },
            ])
            .when(GenerationCommand::RecordSettlement { at: at() })
            .then_expect_events(vec![GenerationEvent::GenerationSettled {
                outcome: "released".into(),
                at: at(),
            }]);
    }

    #[test]
    fn progress_only_grows_and_unknown_jobs_are_refused() {
        TestFramework::<GenerationJob>::with(())
            .given(vec![
                requested(),
                GenerationEvent::GenerationProgressed {
                    progress: 40,
                    at: at(),
                },
            ])
            .when(GenerationCommand::RecordProgress {
                progress: 30,
                at: at(),
            })
            .then_expect_events(vec![]);
        TestFramework::<GenerationJob>::with(())
            .given_no_previous_events()
            .when(GenerationCommand::Complete {
                result_url: "u".into(),
                at: at(),
            })
            .then_expect_error(GenerationError::UnknownJob);
    }
}
