//! Bilibili's live protocol: the messages a room's WebSocket delivers
//! (decoded by [`packet`], `SEND_GIFT_V2` turned back into `SEND_GIFT` by
//! [`gift_v2`]) parsed into the domain's [`Observation`]s, and the request
//! signing its web API asks for ([`wbi`]). The collector
//! (`gifts::collector`) and `POST /ingest` both parse through here.
//!
//! `cmd` may carry a `:suffix` (`DANMU_MSG:4:0:2:2:2:0`), which is stripped.
//! Each message may carry `received_at` (Unix milliseconds) — the event's
//! time, so a recording can be replayed; without it the server's clock is
//! used. Unknown commands are counted and left out; a known command whose
//! required fields are missing or mistyped rejects the whole batch.

pub mod gift_v2;
pub mod packet;
pub mod wbi;

use aggregates::monitored_room::{
    BlindBox, GiftObservation, GuardObservation, Observation, SuperChatObservation,
};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[derive(Debug, PartialEq, Eq)]
pub struct Malformed {
    pub index: usize,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Parsed {
    pub observations: Vec<Observation>,
    /// Unknown commands and known ones that carry nothing the statistics use.
    pub ignored: usize,
}

type R<T> = Result<T, String>;

fn int(v: &Value, what: &str) -> R<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("{what} must be an integer")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("{what} must be an integer")),
        Value::Null => Err(format!("{what} is missing")),
        _ => Err(format!("{what} must be an integer")),
    }
}

fn opt_int(v: &Value, what: &str) -> R<Option<i64>> {
    match v {
        Value::Null => Ok(None),
        other => int(other, what).map(Some),
    }
}

fn text(v: &Value, what: &str) -> R<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Err(format!("{what} is missing")),
        _ => Err(format!("{what} must be a string")),
    }
}

fn text_or_empty(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn non_negative(n: i64, what: &str) -> R<i64> {
    if n < 0 {
        return Err(format!("{what} must not be negative"));
    }
    Ok(n)
}

fn positive(n: i64, what: &str) -> R<i64> {
    if n <= 0 {
        return Err(format!("{what} must be positive"));
    }
    Ok(n)
}

fn short_hash(s: &str) -> String {
    Sha256::digest(s.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Parses a batch. `now` stands in for messages without `received_at`.
pub fn parse_batch(items: &[Value], now: DateTime<Utc>) -> Result<Parsed, Malformed> {
    let mut parsed = Parsed::default();
    for (index, item) in items.iter().enumerate() {
        // SEND_GIFT_V2: a protobuf of one or more gift items, each counted
        // as the SEND_GIFT it stands for (its own tid)
        if item["cmd"].as_str().and_then(|c| c.split(':').next()) == Some("SEND_GIFT_V2") {
            let gifts = gift_v2::send_gift_messages(item).map_err(|e| Malformed {
                index,
                reason: format!("SEND_GIFT_V2: {e}"),
            })?;
            for gift in &gifts {
                match parse_one(gift, now) {
                    Ok(Some(o)) => parsed.observations.push(o),
                    Ok(None) => parsed.ignored += 1,
                    Err(reason) => {
                        return Err(Malformed {
                            index,
                            reason: format!("SEND_GIFT_V2: {reason}"),
                        })
                    }
                }
            }
            continue;
        }
        match parse_one(item, now) {
            Ok(Some(o)) => parsed.observations.push(o),
            Ok(None) => parsed.ignored += 1,
            Err(reason) => return Err(Malformed { index, reason }),
        }
    }
    // in the order things happened (stable for equal times)
    parsed.observations.sort_by_key(Observation::at);
    Ok(parsed)
}

fn parse_one(msg: &Value, now: DateTime<Utc>) -> R<Option<Observation>> {
    let Value::Object(_) = msg else {
        return Err("a message must be a JSON object".into());
    };
    let cmd = text(&msg["cmd"], "cmd")?;
    let cmd = cmd.split(':').next().unwrap_or_default();
    let received_ms = opt_int(&msg["received_at"], "received_at")?;
    let at = match received_ms {
        Some(ms) => Utc
            .timestamp_millis_opt(positive(ms, "received_at")?)
            .single()
            .ok_or("received_at is out of range")?,
        None => now,
    };
    let data = &msg["data"];
    let need_data = || -> R<()> {
        if data.is_object() {
            Ok(())
        } else {
            Err(format!("{cmd}: data must be an object"))
        }
    };
    Ok(Some(match cmd {
        "SEND_GIFT" => {
            need_data()?;
            let uid = int(&data["uid"], "data.uid")?;
            let gift_id = int(&data["giftId"], "data.giftId")?;
            let num = positive(int(&data["num"], "data.num")?, "data.num")?;
            let price = non_negative(int(&data["price"], "data.price")?, "data.price")?;
            let total_coin = match opt_int(&data["total_coin"], "data.total_coin")? {
                Some(t) => non_negative(t, "data.total_coin")?,
                None => price * num,
            };
            let coin_type = text(&data["coin_type"], "data.coin_type")?;
            let gold = match coin_type.as_str() {
                "gold" => true,
                "silver" => false,
                other => {
                    return Err(format!(
                        "data.coin_type {other:?} is neither gold nor silver"
                    ))
                }
            };
            let blind_box = match &data["blind_gift"] {
                Value::Null => None,
                Value::Object(_) => {
                    let b = &data["blind_gift"];
                    Some(BlindBox {
                        box_gift_id: int(&b["original_gift_id"], "blind_gift.original_gift_id")?,
                        box_name: text_or_empty(&b["original_gift_name"]),
                        box_price: non_negative(
                            int(&b["original_gift_price"], "blind_gift.original_gift_price")?,
                            "blind_gift.original_gift_price",
                        )?,
                    })
                }
                _ => return Err("data.blind_gift must be an object or null".into()),
            };
            let tid = data["tid"].as_str().filter(|t| !t.is_empty() && *t != "0");
            let rnd = match &data["rnd"] {
                Value::String(s) if !s.is_empty() && s != "0" => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            let key = match (tid, rnd, opt_int(&data["timestamp"], "data.timestamp")?) {
                (Some(tid), _, _) => format!("gift:{tid}"),
                (None, Some(rnd), _) => format!("gift:rnd:{rnd}:{uid}:{gift_id}:{num}"),
                (None, None, Some(ts)) => format!("gift:ts:{ts}:{uid}:{gift_id}:{num}"),
                _ => return Err("SEND_GIFT needs data.tid, data.rnd or data.timestamp to be recognised when resent".into()),
            };
            Observation::Gift(GiftObservation {
                key,
                uid,
                uname: text_or_empty(&data["uname"]),
                gift_id,
                gift_name: text_or_empty(&data["giftName"]),
                num,
                gold,
                price,
                total_coin,
                blind_box,
                at,
            })
        }
        // the older toast carries the purchase's fields flat, like GUARD_BUY
        "GUARD_BUY" | "USER_TOAST_MSG" => {
            need_data()?;
            guard(
                int(&data["uid"], "data.uid")?,
                text_or_empty(&data["username"]),
                int(&data["guard_level"], "data.guard_level")?,
                int(&data["num"], "data.num")?,
                int(&data["price"], "data.price")?,
                opt_int(&data["start_time"], "data.start_time")?,
                at,
            )?
        }
        "USER_TOAST_MSG_V2" => {
            need_data()?;
            let (uid, name) = (
                &data["sender_uinfo"]["uid"],
                &data["sender_uinfo"]["base"]["name"],
            );
            let g = &data["guard_info"];
            let p = &data["pay_info"];
            guard(
                int(uid, "data.sender_uinfo.uid")?,
                text_or_empty(name),
                int(&g["guard_level"], "data.guard_info.guard_level")?,
                int(&p["num"], "data.pay_info.num")?,
                int(&p["price"], "data.pay_info.price")?,
                opt_int(&g["start_time"], "data.guard_info.start_time")?,
                at,
            )?
        }
        "SUPER_CHAT_MESSAGE" => {
            need_data()?;
            let id = positive(int(&data["id"], "data.id")?, "data.id")?;
            Observation::SuperChat(SuperChatObservation {
                key: format!("sc:{id}"),
                id,
                uid: int(&data["uid"], "data.uid")?,
                uname: text_or_empty(&data["user_info"]["uname"]),
                price: positive(int(&data["price"], "data.price")?, "data.price")?,
                message: text_or_empty(&data["message"]),
                at,
            })
        }
        "DANMU_MSG" => {
            let info = msg["info"]
                .as_array()
                .ok_or("DANMU_MSG: info must be an array")?;
            let uid = int(&info.get(2).unwrap_or(&Value::Null)[0], "info[2][0]")?;
            let content = info.get(1).and_then(Value::as_str).unwrap_or_default();
            let check = info.get(9).filter(|v| v.is_object());
            let sent_ms = info.first().and_then(|i| i.get(4)).and_then(Value::as_i64);
            let key = match (
                check.and_then(|c| c["ct"].as_str()),
                check.map(|c| &c["ts"]),
                sent_ms,
            ) {
                (Some(ct), Some(ts), _) if !ct.is_empty() => Some(format!("dm:{ts}:{ct}")),
                (_, _, Some(ms)) => Some(format!("dm:{uid}:{ms}:{}", short_hash(content))),
                _ => None,
            };
            Observation::Danmaku { key, uid, at }
        }
        "LIVE" => Observation::Live { at },
        "PREPARING" => {
            let replay = matches!(int(&msg["round"], "round"), Ok(1));
            Observation::Preparing { replay, at }
        }
        "ONLINE_RANK_COUNT" => {
            need_data()?;
            let online = match opt_int(&data["online_count"], "data.online_count")? {
                Some(n) => n,
                None => int(&data["count"], "data.count")?,
            };
            Observation::Concurrency {
                key: received_ms.map(|ms| format!("online:{ms}")),
                online: non_negative(online, "data.online_count")?,
                at,
            }
        }
        "ROOM_REAL_TIME_MESSAGE_UPDATE" => {
            need_data()?;
            Observation::RoomStats {
                attention: opt_int(&data["fans"], "data.fans")?,
                fans_count: opt_int(&data["fans_club"], "data.fans_club")?,
                at,
            }
        }
        // A collector's reading of the room's guard list (舰长/提督/总督),
        // named as seed 001 names the counts.
        "GUARD_COUNTS" => {
            need_data()?;
            Observation::GuardCounts {
                guard_1: non_negative(int(&data["guard_1"], "data.guard_1")?, "data.guard_1")?,
                guard_2: non_negative(int(&data["guard_2"], "data.guard_2")?, "data.guard_2")?,
                guard_3: non_negative(int(&data["guard_3"], "data.guard_3")?, "data.guard_3")?,
                at,
            }
        }
        "ROOM_CHANGE" => {
            need_data()?;
            Observation::Title {
                title: text(&data["title"], "data.title")?,
                at,
            }
        }
        // known, but nothing the statistics use (the JPN twin repeats the SC)
        "SUPER_CHAT_MESSAGE_JPN" | "WATCHED_CHANGE" => return Ok(None),
        _ => return Ok(None),
    }))
}

/// A guard purchase, whether told by GUARD_BUY or by the toast that
/// repeats it: both give the same key, so it counts once.
fn guard(
    uid: i64,
    uname: String,
    level: i64,
    num: i64,
    price: i64,
    start_time: Option<i64>,
    at: DateTime<Utc>,
) -> R<Observation> {
    if !(1..=3).contains(&level) {
        return Err(format!("guard_level {level} is not 1, 2 or 3"));
    }
    let started = start_time.unwrap_or(at.timestamp());
    Ok(Observation::Guard(GuardObservation {
        key: format!("guard:{uid}:{level}:{started}"),
        uid,
        uname,
        level,
        num: positive(num, "num")?,
        price: non_negative(price, "price")?,
        at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn a_guard_and_its_toast_share_one_key() {
        let batch = [
            json!({"cmd": "GUARD_BUY", "data": {"uid": 7, "username": "u", "guard_level": 3, "num": 1, "price": 198000, "start_time": 1700000000}}),
            json!({"cmd": "USER_TOAST_MSG_V2", "data": {"sender_uinfo": {"uid": 7, "base": {"name": "u"}}, "guard_info": {"guard_level": 3, "start_time": 1700000000}, "pay_info": {"num": 1, "price": 198000}}}),
        ];
        let p = parse_batch(&batch, now()).unwrap();
        let keys: Vec<_> = p
            .observations
            .iter()
            .map(|o| o.dedupe_key().unwrap().to_owned())
            .collect();
        assert_eq!(keys[0], keys[1]);
    }

    #[test]
    fn suffixes_are_stripped_and_unknown_commands_ignored() {
        let batch = [
            json!({"cmd": "DANMU_MSG:4:0:2:2:2:0", "info": [[0, 1, 25, 0, 1700000000123u64], "hi", [9, "name"]]}),
            json!({"cmd": "SOMETHING_NEW", "data": {}}),
            json!({"cmd": "SUPER_CHAT_MESSAGE_JPN", "data": {"id": "1"}}),
        ];
        let p = parse_batch(&batch, now()).unwrap();
        assert_eq!((p.observations.len(), p.ignored), (1, 2));
        assert!(matches!(
            p.observations[0],
            Observation::Danmaku {
                uid: 9,
                key: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn malformed_messages_name_their_index() {
        let batch = [
            json!({"cmd": "LIVE"}),
            json!({"cmd": "SEND_GIFT", "data": {"uid": 1, "giftId": 2, "num": "many"}}),
        ];
        let err = parse_batch(&batch, now()).unwrap_err();
        assert_eq!(err.index, 1);
        assert!(err.reason.contains("data.num"), "{}", err.reason);
        assert!(parse_batch(&[json!(5)], now()).is_err());
        assert!(parse_batch(&[json!({"cmd": "LIVE", "received_at": -5})], now()).is_err());
    }

    #[test]
    fn received_at_orders_the_batch() {
        let batch = [
            json!({"cmd": "PREPARING", "received_at": 2000}),
            json!({"cmd": "LIVE", "received_at": 1000}),
        ];
        let p = parse_batch(&batch, now()).unwrap();
        assert!(matches!(p.observations[0], Observation::Live { .. }));
    }
}
