//! A live room's audience (seed 000): viewers' chat, follows of anchors and
//! the anchors' subscription prices.
//!
//! Viewer messages have no invariant between them, so they are not one
//! stream per room: each chatter has a stream per room
//! (`<room id>/<chatter>`), which orders that chatter's messages and holds
//! their rate limit, while a thousand chatters in one room append to a
//! thousand streams side by side.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::{bounded_text, InvalidValue};

/// A guest's chosen name (`游客1234`) or an account's name: 1–32
/// characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChatterName(String);

impl ChatterName {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw.trim(), "username", 32, false, false).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A viewer's message: 1–500 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ViewerText(String);

impl ViewerText {
    pub const MAX_CHARS: usize = 500;
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw, "user_message", Self::MAX_CHARS, false, true).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who chats: an account (its id and seed 000 `uid`) or a guest (no id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chatter {
    pub account_id: Option<Uuid>,
    pub uid: String,
    pub name: ChatterName,
}

impl Chatter {
    /// The chatter's part of its stream id: the account, or the guest's
    /// name folded to lower case.
    pub fn key(&self) -> String {
        match self.account_id {
            Some(id) => id.to_string(),
            None => format!("guest:{}", self.name.as_str().to_lowercase()),
        }
    }
}

/// A viewer-chat stream id.
pub fn viewer_chat_id(room_id: &str, chatter: &Chatter) -> String {
    format!("{room_id}/{}", chatter.key())
}

/// At most `max` messages in any `per` (per chatter and room).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatRate {
    pub max: u32,
    pub per: Duration,
}

#[derive(Debug)]
pub enum ViewerChatCommand {
    PostViewerMessage {
        room_id: String,
        chatter: Chatter,
        text: ViewerText,
        /// `None`: no limit
        rate: Option<ChatRate>,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ViewerChatEvent {
    ViewerMessagePosted {
        room_id: String,
        account_id: Option<Uuid>,
        uid: String,
        username: String,
        message: String,
        sent_at: DateTime<Utc>,
    },
}

impl DomainEvent for ViewerChatEvent {
    fn event_type(&self) -> String {
        "ViewerMessagePosted".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewerChatError {
    #[error("too many messages; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: i64 },
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ViewerChat {
    /// times of the latest messages, oldest first (as many as the rate needs)
    recent: VecDeque<DateTime<Utc>>,
}

/// Times kept for the rate limit: a policy allows at most this many
/// messages per period.
pub const KEEP_TIMES: usize = 64;

impl Aggregate for ViewerChat {
    const TYPE: &'static str = "ViewerChat";
    type Command = ViewerChatCommand;
    type Event = ViewerChatEvent;
    type Error = ViewerChatError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let ViewerChatCommand::PostViewerMessage {
            room_id,
            chatter,
            text,
            rate,
            at,
        } = command;
        let rate = rate.unwrap_or(ChatRate {
            max: KEEP_TIMES as u32,
            per: Duration::zero(),
        });
        let max = (rate.max as usize).clamp(1, KEEP_TIMES);
        if self.recent.len() >= max {
            let oldest = self.recent[self.recent.len() - max];
            let free_at = oldest + rate.per;
            if free_at > at {
                let wait = (free_at - at).num_milliseconds();
                return Err(ViewerChatError::RateLimited {
                    retry_after_secs: (wait + 999) / 1000,
                });
            }
        }
        let event = ViewerChatEvent::ViewerMessagePosted {
            room_id,
            account_id: chatter.account_id,
            uid: chatter.uid,
            username: chatter.name.0,
            message: text.0,
            sent_at: at,
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let ViewerChatEvent::ViewerMessagePosted { sent_at, .. } = event;
        if self.recent.len() == KEEP_TIMES {
            self.recent.pop_front();
        }
        self.recent.push_back(sent_at);
    }
}

/// A follow stream id: `<viewer>:<anchor>`.
pub fn follow_id(viewer: Uuid, anchor: Uuid) -> String {
    format!("{viewer}:{anchor}")
}

#[derive(Debug)]
pub enum FollowCommand {
    FollowAnchor {
        viewer: Uuid,
        anchor: Uuid,
        /// the room the follow came from
        room_id: String,
        at: DateTime<Utc>,
    },
    UnfollowAnchor {
        viewer: Uuid,
        anchor: Uuid,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FollowEvent {
    AnchorFollowed {
        viewer_id: Uuid,
        anchor_id: Uuid,
        room_id: String,
        at: DateTime<Utc>,
    },
    AnchorUnfollowed {
        viewer_id: Uuid,
        anchor_id: Uuid,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for FollowEvent {
    fn event_type(&self) -> String {
        match self {
            Self::AnchorFollowed { .. } => "AnchorFollowed",
            Self::AnchorUnfollowed { .. } => "AnchorUnfollowed",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    #[error("an anchor cannot follow themself")]
    SelfFollow,
}

/// One viewer's follow of one anchor; following twice (or unfollowing
/// what is not followed) records nothing.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Follow {
    following: bool,
}

impl Aggregate for Follow {
    const TYPE: &'static str = "Follow";
    type Command = FollowCommand;
    type Event = FollowEvent;
    type Error = FollowError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            FollowCommand::FollowAnchor {
                viewer,
                anchor,
                room_id,
                at,
            } => {
                if viewer == anchor {
                    return Err(FollowError::SelfFollow);
                }
                if !self.following {
                    let event = FollowEvent::AnchorFollowed {
                        viewer_id: viewer,
                        anchor_id: anchor,
                        room_id,
                        at,
                    };
                    sink.write(event, self).await;
                }
            }
            FollowCommand::UnfollowAnchor { viewer, anchor, at } => {
                if self.following {
                    let event = FollowEvent::AnchorUnfollowed {
                        viewer_id: viewer,
                        anchor_id: anchor,
                        at,
                    };
                    sink.write(event, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.following = matches!(event, FollowEvent::AnchorFollowed { .. });
    }
}

#[derive(Debug)]
pub enum AnchorCommand {
    /// The price of a subscription period of `period_secs` (0 coins: no
    /// subscriptions).
    SetSubscriptionPrice {
        anchor: Uuid,
        amount: i64,
        period_secs: i64,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AnchorEvent {
    SubscriptionPriceSet {
        anchor_id: Uuid,
        amount: i64,
        period_secs: i64,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for AnchorEvent {
    fn event_type(&self) -> String {
        "SubscriptionPriceSet".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
}

/// An anchor's own settings (stream id: the account id).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Anchor {
    price: i64,
    period_secs: i64,
}

impl Anchor {
    pub const MAX_PRICE: i64 = 1_000_000;
}

impl Aggregate for Anchor {
    const TYPE: &'static str = "Anchor";
    type Command = AnchorCommand;
    type Event = AnchorEvent;
    type Error = AnchorError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let AnchorCommand::SetSubscriptionPrice {
            anchor,
            amount,
            period_secs,
            at,
        } = command;
        if !(0..=Self::MAX_PRICE).contains(&amount) {
            return Err(InvalidValue("amount must be between 0 and 1000000".into()).into());
        }
        if period_secs <= 0 {
            return Err(InvalidValue("a subscription period must be positive".into()).into());
        }
        if (amount, period_secs) != (self.price, self.period_secs) {
            let event = AnchorEvent::SubscriptionPriceSet {
                anchor_id: anchor,
                amount,
                period_secs,
                at,
            };
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let AnchorEvent::SubscriptionPriceSet {
            amount,
            period_secs,
            ..
        } = event;
        (self.price, self.period_secs) = (amount, period_secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + secs, 0).unwrap()
    }

    fn guest() -> Chatter {
        Chatter {
            account_id: None,
            uid: String::new(),
            name: ChatterName::parse("游客1234").unwrap(),
        }
    }

    fn post(secs: i64) -> ViewerChatCommand {
        ViewerChatCommand::PostViewerMessage {
            room_id: "4cff21a28f2c0961".into(),
            chatter: guest(),
            text: ViewerText::parse("hello").unwrap(),
            rate: Some(ChatRate {
                max: 2,
                per: Duration::seconds(10),
            }),
            at: at(secs),
        }
    }

    fn posted(secs: i64) -> ViewerChatEvent {
        ViewerChatEvent::ViewerMessagePosted {
            room_id: "4cff21a28f2c0961".into(),
            account_id: None,
            uid: String::new(),
            username: "游客1234".into(),
            message: "hello".into(),
            sent_at: at(secs),
        }
    }

    #[test]
    fn a_chatter_posts_within_the_rate_and_waits_beyond_it() {
        TestFramework::<ViewerChat>::with(())
            .given(vec![posted(0)])
            .when(post(1))
            .then_expect_events(vec![posted(1)]);
        TestFramework::<ViewerChat>::with(())
            .given(vec![posted(0), posted(1)])
            .when(post(2))
            .then_expect_error(ViewerChatError::RateLimited {
                retry_after_secs: 8,
            });
        TestFramework::<ViewerChat>::with(())
            .given(vec![posted(0), posted(1)])
            .when(post(10))
            .then_expect_events(vec![posted(10)]);
    }

    #[test]
    fn guests_streams_fold_the_name_and_accounts_use_their_id() {
        assert_eq!(
            viewer_chat_id(
                "r",
                &Chatter {
                    name: ChatterName::parse("Guest").unwrap(),
                    ..guest()
                }
            ),
            "r/guest:guest"
        );
        let id = Uuid::from_u128(9);
        let account = Chatter {
            account_id: Some(id),
            uid: "x".into(),
            name: ChatterName::parse("bob").unwrap(),
        };
        assert_eq!(viewer_chat_id("r", &account), format!("r/{id}"));
        assert!(ViewerText::parse(&"a".repeat(501)).is_err());
        assert!(ChatterName::parse("  ").is_err());
    }

    #[test]
    fn following_is_idempotent_and_never_of_oneself() {
        let (v, a) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let follow = |viewer| FollowCommand::FollowAnchor {
            viewer,
            anchor: a,
            room_id: "r".into(),
            at: at(0),
        };
        let followed = FollowEvent::AnchorFollowed {
            viewer_id: v,
            anchor_id: a,
            room_id: "r".into(),
            at: at(0),
        };
        TestFramework::<Follow>::with(())
            .given_no_previous_events()
            .when(follow(v))
            .then_expect_events(vec![followed.clone()]);
        TestFramework::<Follow>::with(())
            .given(vec![followed.clone()])
            .when(follow(v))
            .then_expect_events(vec![]);
        TestFramework::<Follow>::with(())
            .given_no_previous_events()
            .when(follow(a))
            .then_expect_error(FollowError::SelfFollow);
        let unfollow = || FollowCommand::UnfollowAnchor {
            viewer: v,
            anchor: a,
            at: at(1),
        };
        TestFramework::<Follow>::with(())
            .given(vec![followed])
            .when(unfollow())
            .then_expect_events(vec![FollowEvent::AnchorUnfollowed {
                viewer_id: v,
                anchor_id: a,
                at: at(1),
            }]);
        TestFramework::<Follow>::with(())
            .given_no_previous_events()
            .when(unfollow())
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_subscription_price_is_bounded_and_recorded_when_it_changes() {
        let a = Uuid::from_u128(2);
        let set = |amount, period_secs| AnchorCommand::SetSubscriptionPrice {
            anchor: a,
            amount,
            period_secs,
            at: at(0),
        };
        let was = AnchorEvent::SubscriptionPriceSet {
            anchor_id: a,
            amount: 100,
            period_secs: 30,
            at: at(0),
        };
        TestFramework::<Anchor>::with(())
            .given_no_previous_events()
            .when(set(100, 30))
            .then_expect_events(vec![was.clone()]);
        TestFramework::<Anchor>::with(())
            .given(vec![was])
            .when(set(100, 30))
            .then_expect_events(vec![]);
        TestFramework::<Anchor>::with(())
            .given_no_previous_events()
            .when(set(-1, 30))
            .then_expect_error(AnchorError::Invalid(InvalidValue(
                "amount must be between 0 and 1000000".into(),
            )));
    }
}
