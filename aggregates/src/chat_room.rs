//! ChatRoom (seed 004): a room, its members and the messages posted in it.
//! The room keeps only its membership as state, so snapshots stay small no
//! matter how many messages the stream holds.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::values::{
    AccountNumber, DisplayName, MemberRole, MessageContent, MessageId, MessageKind,
    RoomDescription, RoomId, RoomName,
};

/// A person acting in a room, as known to the command side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub number: AccountNumber,
    pub username: DisplayName,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ChatRoom {
    created: bool,
    room_id: i64,
    members: BTreeMap<i64, MemberRole>,
}

#[derive(Debug)]
pub enum ChatRoomCommand {
    CreateRoom {
        room_id: RoomId,
        name: RoomName,
        description: RoomDescription,
        creator: Member,
        at: DateTime<Utc>,
    },
    AddMember {
        actor: AccountNumber,
        member: Member,
        role: MemberRole,
        at: DateTime<Utc>,
    },
    PostMessage {
        message_id: MessageId,
        sender: Member,
        kind: MessageKind,
        content: MessageContent,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChatRoomEvent {
    ChatRoomCreated {
        room_id: i64,
        name: String,
        description: String,
        created_by: i64,
        created_at: DateTime<Utc>,
    },
    MemberAdded {
        room_id: i64,
        user_id: i64,
        username: String,
        role: MemberRole,
        added_by: i64,
        added_at: DateTime<Utc>,
    },
    MessagePosted {
        room_id: i64,
        message_id: i64,
        sender_id: i64,
        sender_name: String,
        kind: String,
        content: String,
        sent_at: DateTime<Utc>,
    },
}

impl DomainEvent for ChatRoomEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ChatRoomCreated { .. } => "ChatRoomCreated".into(),
            Self::MemberAdded { .. } => "MemberAdded".into(),
            Self::MessagePosted { .. } => "MessagePosted".into(),
        }
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatRoomError {
    #[error("room not found")]
    NotFound,
    #[error("room already exists")]
    AlreadyExists,
    #[error("not a member of this room")]
    NotAMember,
    #[error("user is already in the room")]
    AlreadyMember,
}

impl ChatRoom {
    fn require_member(&self, who: AccountNumber) -> Result<(), ChatRoomError> {
        if !self.created {
            return Err(ChatRoomError::NotFound);
        }
        if !self.members.contains_key(&who.get()) {
            return Err(ChatRoomError::NotAMember);
        }
        Ok(())
    }
}

impl Aggregate for ChatRoom {
    const TYPE: &'static str = "ChatRoom";
    type Command = ChatRoomCommand;
    type Event = ChatRoomEvent;
    type Error = ChatRoomError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            ChatRoomCommand::CreateRoom {
                room_id,
                name,
                description,
                creator,
                at,
            } => {
                if self.created {
                    return Err(ChatRoomError::AlreadyExists);
                }
                let room_id = room_id.get();
                sink.write(
                    ChatRoomEvent::ChatRoomCreated {
                        room_id,
                        name: name.as_str().to_owned(),
                        description: description.as_str().to_owned(),
                        created_by: creator.number.get(),
                        created_at: at,
                    },
                    self,
                )
                .await;
                sink.write(
                    ChatRoomEvent::MemberAdded {
                        room_id,
                        user_id: creator.number.get(),
                        username: creator.username.as_str().to_owned(),
                        role: MemberRole::Owner,
                        added_by: creator.number.get(),
                        added_at: at,
                    },
                    self,
                )
                .await;
            }
            ChatRoomCommand::AddMember {
                actor,
                member,
                role,
                at,
            } => {
                self.require_member(actor)?;
                if self.members.contains_key(&member.number.get()) {
                    return Err(ChatRoomError::AlreadyMember);
                }
                let event = ChatRoomEvent::MemberAdded {
                    room_id: self.room_id,
                    user_id: member.number.get(),
                    username: member.username.as_str().to_owned(),
                    role,
                    added_by: actor.get(),
                    added_at: at,
                };
                sink.write(event, self).await;
            }
            ChatRoomCommand::PostMessage {
                message_id,
                sender,
                kind,
                content,
                at,
            } => {
                self.require_member(sender.number)?;
                let event = ChatRoomEvent::MessagePosted {
                    room_id: self.room_id,
                    message_id: message_id.get(),
                    sender_id: sender.number.get(),
                    sender_name: sender.username.as_str().to_owned(),
                    kind: kind.as_str().to_owned(),
                    content: content.as_str().to_owned(),
                    sent_at: at,
                };
                sink.write(event, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ChatRoomEvent::ChatRoomCreated { room_id, .. } => {
                self.created = true;
                self.room_id = room_id;
            }
            ChatRoomEvent::MemberAdded { user_id, role, .. } => {
                self.members.insert(user_id, role);
            }
            ChatRoomEvent::MessagePosted { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn member(n: i64, name: &str) -> Member {
        Member {
            number: AccountNumber::new(n).unwrap(),
            username: DisplayName::parse(name).unwrap(),
        }
    }

    fn created(at: DateTime<Utc>) -> Vec<ChatRoomEvent> {
        vec![
            ChatRoomEvent::ChatRoomCreated {
                room_id: 1,
                name: "room1".into(),
                description: "test room".into(),
                created_by: 10,
                created_at: at,
            },
            ChatRoomEvent::MemberAdded {
                room_id: 1,
                user_id: 10,
                username: "alice".into(),
                role: MemberRole::Owner,
                added_by: 10,
                added_at: at,
            },
        ]
    }

    fn post(by: Member, at: DateTime<Utc>) -> ChatRoomCommand {
        ChatRoomCommand::PostMessage {
            message_id: MessageId::new(99).unwrap(),
            sender: by,
            kind: MessageKind::parse("text").unwrap(),
            content: MessageContent::parse("hello").unwrap(),
            at,
        }
    }

    #[test]
    fn creating_a_room_makes_the_creator_its_owner() {
        let at = Utc::now();
        TestFramework::<ChatRoom>::with(())
            .given_no_previous_events()
            .when(ChatRoomCommand::CreateRoom {
                room_id: RoomId::new(1).unwrap(),
                name: RoomName::parse("room1").unwrap(),
                description: RoomDescription::parse("test room").unwrap(),
                creator: member(10, "alice"),
                at,
            })
            .then_expect_events(created(at));
    }

    #[test]
    fn a_member_posts_a_message() {
        let at = Utc::now();
        TestFramework::<ChatRoom>::with(())
            .given(created(at))
            .when(post(member(10, "alice"), at))
            .then_expect_events(vec![ChatRoomEvent::MessagePosted {
                room_id: 1,
                message_id: 99,
                sender_id: 10,
                sender_name: "alice".into(),
                kind: "text".into(),
                content: "hello".into(),
                sent_at: at,
            }]);
    }

    #[test]
    fn a_non_member_may_not_post() {
        let at = Utc::now();
        TestFramework::<ChatRoom>::with(())
            .given(created(at))
            .when(post(member(11, "bob"), at))
            .then_expect_error(ChatRoomError::NotAMember);
    }

    #[test]
    fn posting_to_a_room_that_does_not_exist_is_not_found() {
        TestFramework::<ChatRoom>::with(())
            .given_no_previous_events()
            .when(post(member(10, "alice"), Utc::now()))
            .then_expect_error(ChatRoomError::NotFound);
    }

    #[test]
    fn only_members_add_others_and_never_twice() {
        let at = Utc::now();
        let add = |actor: i64, who: Member| ChatRoomCommand::AddMember {
            actor: AccountNumber::new(actor).unwrap(),
            member: who,
            role: MemberRole::Member,
            at,
        };
        TestFramework::<ChatRoom>::with(())
            .given(created(at))
            .when(add(12, member(11, "bob")))
            .then_expect_error(ChatRoomError::NotAMember);
        TestFramework::<ChatRoom>::with(())
            .given(created(at))
            .when(add(10, member(10, "alice")))
            .then_expect_error(ChatRoomError::AlreadyMember);
        TestFramework::<ChatRoom>::with(())
            .given(created(at))
            .when(add(10, member(11, "bob")))
            .then_expect_events(vec![ChatRoomEvent::MemberAdded {
                room_id: 1,
                user_id: 11,
                username: "bob".into(),
                role: MemberRole::Member,
                added_by: 10,
                added_at: at,
            }]);
    }

    #[test]
    fn a_room_cannot_be_created_twice() {
        let at = Utc::now();
        TestFramework::<ChatRoom>::with(())
            .given(created(at))
            .when(ChatRoomCommand::CreateRoom {
                room_id: RoomId::new(1).unwrap(),
                name: RoomName::parse("again").unwrap(),
                description: RoomDescription::parse("").unwrap(),
                creator: member(10, "alice"),
                at,
            })
            .then_expect_error(ChatRoomError::AlreadyExists);
    }
}
