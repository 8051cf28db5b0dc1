//! MonitoredRoom (seed 001): a Bilibili live room whose gifts, guards, super
//! chats, danmaku and live sessions are recorded. Stream id: the room id.
//!
//! The adapter parses the raw danmaku messages into [`Observation`]s and
//! drops the ones already recorded (each carries a dedupe key that the event
//! store claims atomically with its event); the aggregate decides what they
//! mean for the room: whether it is monitored, when a live session starts
//! and ends. Money stays in integers: gold coins (1000 = 1 yuan) for gifts
//! and guards, yuan for super chats.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::values::{AnchorName, RoomId};

/// A blind box opened into the gift it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlindBox {
    pub box_gift_id: i64,
    pub box_name: String,
    /// Gold coins per box.
    pub box_price: i64,
}

/// What a collector saw in the room, already parsed from the wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    Gift(GiftObservation),
    Guard(GuardObservation),
    SuperChat(SuperChatObservation),
    Danmaku {
        key: Option<String>,
        uid: i64,
        at: DateTime<Utc>,
    },
    Live {
        at: DateTime<Utc>,
    },
    Preparing {
        replay: bool,
        at: DateTime<Utc>,
    },
    Concurrency {
        key: Option<String>,
        online: i64,
        at: DateTime<Utc>,
    },
    RoomStats {
        attention: Option<i64>,
        fans_count: Option<i64>,
        at: DateTime<Utc>,
    },
    GuardCounts {
        guard_1: i64,
        guard_2: i64,
        guard_3: i64,
        at: DateTime<Utc>,
    },
    Title {
        title: String,
        at: DateTime<Utc>,
    },
}

impl Observation {
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::Gift(g) => g.at,
            Self::Guard(g) => g.at,
            Self::SuperChat(s) => s.at,
            Self::Danmaku { at, .. }
            | Self::Live { at }
            | Self::Preparing { at, .. }
            | Self::Concurrency { at, .. }
            | Self::RoomStats { at, .. }
            | Self::GuardCounts { at, .. }
            | Self::Title { at, .. } => *at,
        }
    }

    /// The key under which a resend of the same message is recognised.
    pub fn dedupe_key(&self) -> Option<&str> {
        match self {
            Self::Gift(g) => Some(&g.key),
            Self::Guard(g) => Some(&g.key),
            Self::SuperChat(s) => Some(&s.key),
            Self::Danmaku { key, .. } | Self::Concurrency { key, .. } => key.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GiftObservation {
    pub key: String,
    pub uid: i64,
    pub uname: String,
    pub gift_id: i64,
    pub gift_name: String,
    pub num: i64,
    /// Gold gifts earn money; silver gifts are worth 0.
    pub gold: bool,
    /// Gold coins per unit of the gift actually received.
    pub price: i64,
    /// The platform's total for the send, in gold coins.
    pub total_coin: i64,
    pub blind_box: Option<BlindBox>,
    pub at: DateTime<Utc>,
}

impl GiftObservation {
    /// Income in gold coins: `total_coin` for gold gifts; a blind box counts
    /// at the box price.
    pub fn income_gold(&self) -> i64 {
        if !self.gold {
            return 0;
        }
        match &self.blind_box {
            Some(b) => b.box_price * self.num,
            None => self.total_coin,
        }
    }

    /// Blind-box gain (or loss) in gold coins: (opened − box) × num.
    pub fn blind_box_profit_gold(&self) -> i64 {
        match &self.blind_box {
            Some(b) if self.gold => (self.price - b.box_price) * self.num,
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardObservation {
    pub key: String,
    pub uid: i64,
    pub uname: String,
    /// Bilibili's level: 1 总督, 2 提督, 3 舰长.
    pub level: i64,
    pub num: i64,
    /// Gold coins per unit.
    pub price: i64,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuperChatObservation {
    pub key: String,
    pub id: i64,
    pub uid: i64,
    pub uname: String,
    /// Yuan, as the platform states it.
    pub price: i64,
    pub message: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct MonitoredRoom {
    monitored: bool,
    sessions: i64,
    open_since: Option<DateTime<Utc>>,
    last_ended: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub enum MonitoredRoomCommand {
    Monitor {
        room_id: RoomId,
        anchor_name: AnchorName,
        at: DateTime<Utc>,
    },
    StopMonitoring {
        room_id: RoomId,
        at: DateTime<Utc>,
    },
    /// A batch from the collector, in the order it happened.
    Record {
        observations: Vec<Observation>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MonitoredRoomEvent {
    RoomMonitored {
        room_id: i64,
        anchor_name: String,
        at: DateTime<Utc>,
    },
    RoomUnmonitored {
        room_id: i64,
        at: DateTime<Utc>,
    },
    LiveStarted {
        session_no: i64,
        at: DateTime<Utc>,
    },
    LiveEnded {
        session_no: i64,
        /// `PREPARING` with `round: 1`: the room went on to replay mode.
        replay: bool,
        at: DateTime<Utc>,
    },
    GiftReceived(GiftObservation),
    GuardBought(GuardObservation),
    SuperChatReceived(SuperChatObservation),
    DanmakuReceived {
        key: Option<String>,
        uid: i64,
        at: DateTime<Utc>,
    },
    ConcurrencySampled {
        key: Option<String>,
        online: i64,
        at: DateTime<Utc>,
    },
    RoomStatsObserved {
        attention: Option<i64>,
        fans_count: Option<i64>,
        at: DateTime<Utc>,
    },
    GuardCountsObserved {
        guard_1: i64,
        guard_2: i64,
        guard_3: i64,
        at: DateTime<Utc>,
    },
    TitleChanged {
        title: String,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for MonitoredRoomEvent {
    fn event_type(&self) -> String {
        match self {
            Self::RoomMonitored { .. } => "RoomMonitored",
            Self::RoomUnmonitored { .. } => "RoomUnmonitored",
            Self::LiveStarted { .. } => "LiveStarted",
            Self::LiveEnded { .. } => "LiveEnded",
            Self::GiftReceived(_) => "GiftReceived",
            Self::GuardBought(_) => "GuardBought",
            Self::SuperChatReceived(_) => "SuperChatReceived",
            Self::DanmakuReceived { .. } => "DanmakuReceived",
            Self::ConcurrencySampled { .. } => "ConcurrencySampled",
            Self::RoomStatsObserved { .. } => "RoomStatsObserved",
            Self::GuardCountsObserved { .. } => "GuardCountsObserved",
            Self::TitleChanged { .. } => "TitleChanged",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

impl MonitoredRoomEvent {
    /// The dedupe key the event store claims for this event, if any.
    pub fn dedupe_key(&self) -> Option<&str> {
        match self {
            Self::GiftReceived(g) => Some(&g.key),
            Self::GuardBought(g) => Some(&g.key),
            Self::SuperChatReceived(s) => Some(&s.key),
            Self::DanmakuReceived { key, .. } | Self::ConcurrencySampled { key, .. } => {
                key.as_deref()
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MonitoredRoomError {
    #[error("the room is already monitored")]
    AlreadyMonitored,
    #[error("the room is not monitored")]
    NotMonitored,
}

impl MonitoredRoom {
    /// What one observation means, given the room's state so far.
    fn interpret(&self, o: Observation) -> Option<MonitoredRoomEvent> {
        use MonitoredRoomEvent as E;
        Some(match o {
            Observation::Live { at } => {
                // A repeat during the session, or a resend of a LIVE from
                // before the last session ended, opens nothing.
                if self.open_since.is_some() || self.last_ended.is_some_and(|e| at <= e) {
                    return None;
                }
                E::LiveStarted {
                    session_no: self.sessions + 1,
                    at,
                }
            }
            Observation::Preparing { replay, at } => {
                let since = self.open_since?;
                if at < since {
                    return None;
                }
                E::LiveEnded {
                    session_no: self.sessions,
                    replay,
                    at,
                }
            }
            Observation::Gift(g) => E::GiftReceived(g),
            Observation::Guard(g) => E::GuardBought(g),
            Observation::SuperChat(s) => E::SuperChatReceived(s),
            Observation::Danmaku { key, uid, at } => E::DanmakuReceived { key, uid, at },
            Observation::Concurrency { key, online, at } => {
                E::ConcurrencySampled { key, online, at }
            }
            Observation::RoomStats {
                attention,
                fans_count,
                at,
            } => E::RoomStatsObserved {
                attention,
                fans_count,
                at,
            },
            Observation::GuardCounts {
                guard_1,
                guard_2,
                guard_3,
                at,
            } => E::GuardCountsObserved {
                guard_1,
                guard_2,
                guard_3,
                at,
            },
            Observation::Title { title, at } => E::TitleChanged { title, at },
        })
    }
}

impl Aggregate for MonitoredRoom {
    const TYPE: &'static str = "MonitoredRoom";
    type Command = MonitoredRoomCommand;
    type Event = MonitoredRoomEvent;
    type Error = MonitoredRoomError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            MonitoredRoomCommand::Monitor {
                room_id,
                anchor_name,
                at,
            } => {
                if self.monitored {
                    return Err(MonitoredRoomError::AlreadyMonitored);
                }
                let event = MonitoredRoomEvent::RoomMonitored {
                    room_id: room_id.get(),
                    anchor_name: anchor_name.as_str().to_owned(),
                    at,
                };
                sink.write(event, self).await;
            }
            MonitoredRoomCommand::StopMonitoring { room_id, at } => {
                if !self.monitored {
                    return Err(MonitoredRoomError::NotMonitored);
                }
                let event = MonitoredRoomEvent::RoomUnmonitored {
                    room_id: room_id.get(),
                    at,
                };
                sink.write(event, self).await;
            }
            MonitoredRoomCommand::Record { observations } => {
                if !self.monitored {
                    return Err(MonitoredRoomError::NotMonitored);
                }
                for o in observations {
                    // `write` applies each event, so the next observation
                    // sees the session it opened or closed.
                    if let Some(event) = self.interpret(o) {
                        sink.write(event, self).await;
                    }
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            MonitoredRoomEvent::RoomMonitored { .. } => self.monitored = true,
            MonitoredRoomEvent::RoomUnmonitored { .. } => self.monitored = false,
            MonitoredRoomEvent::LiveStarted { session_no, at } => {
                self.sessions = session_no;
                self.open_since = Some(at);
            }
            MonitoredRoomEvent::LiveEnded { at, .. } => {
                self.open_since = None;
                self.last_ended = Some(at);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use cqrs_es::test::TestFramework;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    fn monitored() -> MonitoredRoomEvent {
        MonitoredRoomEvent::RoomMonitored {
            room_id: 42,
            anchor_name: "anchor".into(),
            at: t(0),
        }
    }

    fn record(observations: Vec<Observation>) -> MonitoredRoomCommand {
        MonitoredRoomCommand::Record { observations }
    }

    #[test]
    fn live_opens_one_session_and_preparing_closes_it() {
        TestFramework::<MonitoredRoom>::with(())
            .given(vec![monitored()])
            .when(record(vec![
                Observation::Live { at: t(10) },
                Observation::Live { at: t(11) },
                Observation::Preparing {
                    replay: true,
                    at: t(100),
                },
                Observation::Preparing {
                    replay: false,
                    at: t(101),
                },
            ]))
            .then_expect_events(vec![
                MonitoredRoomEvent::LiveStarted {
                    session_no: 1,
                    at: t(10),
                },
                MonitoredRoomEvent::LiveEnded {
                    session_no: 1,
                    replay: true,
                    at: t(100),
                },
            ]);
    }

    #[test]
    fn a_resent_live_from_before_the_last_end_opens_nothing() {
        TestFramework::<MonitoredRoom>::with(())
            .given(vec![
                monitored(),
                MonitoredRoomEvent::LiveStarted {
                    session_no: 1,
                    at: t(10),
                },
                MonitoredRoomEvent::LiveEnded {
                    session_no: 1,
                    replay: false,
                    at: t(100),
                },
            ])
            .when(record(vec![
                Observation::Live { at: t(10) },
                Observation::Live { at: t(200) },
            ]))
            .then_expect_events(vec![MonitoredRoomEvent::LiveStarted {
                session_no: 2,
                at: t(200),
            }]);
    }

    #[test]
    fn an_unmonitored_room_records_nothing() {
        TestFramework::<MonitoredRoom>::with(())
            .given_no_previous_events()
            .when(record(vec![Observation::Live { at: t(1) }]))
            .then_expect_error(MonitoredRoomError::NotMonitored);
        TestFramework::<MonitoredRoom>::with(())
            .given(vec![monitored()])
            .when(MonitoredRoomCommand::Monitor {
                room_id: RoomId::new(42).unwrap(),
                anchor_name: AnchorName::parse("x").unwrap(),
                at: t(2),
            })
            .then_expect_error(MonitoredRoomError::AlreadyMonitored);
    }

    #[test]
    fn blind_boxes_count_at_box_price_and_profit_may_be_negative() {
        let gift = |price, box_price: Option<i64>, gold| GiftObservation {
            key: "k".into(),
            uid: 1,
            uname: "u".into(),
            gift_id: 1,
            gift_name: "g".into(),
            num: 3,
            gold,
            price,
            total_coin: price * 3,
            blind_box: box_price.map(|p| BlindBox {
                box_gift_id: 9,
                box_name: "box".into(),
                box_price: p,
            }),
            at: t(0) + Duration::seconds(1),
        };
        assert_eq!(gift(1000, None, true).income_gold(), 3000);
        assert_eq!(gift(1000, None, false).income_gold(), 0);
        assert_eq!(gift(500, Some(1500), true).income_gold(), 4500);
        assert_eq!(gift(500, Some(1500), true).blind_box_profit_gold(), -3000);
        assert_eq!(gift(5200, Some(1500), true).blind_box_profit_gold(), 11100);
    }
}
