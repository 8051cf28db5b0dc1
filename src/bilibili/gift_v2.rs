//! `SEND_GIFT_V2` (protobuf, rolled out from 2026-07) turned back into
//! classic `SEND_GIFT` messages, one per gift item, so the JSON parser that
//! knows `SEND_GIFT` handles them unchanged.
//!
//! The message is `{"cmd":"SEND_GIFT_V2","data":{"dmscore":…,"pb":"<base64>"}}`;
//! `pb` is a `SendGiftBroadcast`. Field numbers (Bilibili publishes no schema):
//! * xfgryujk/blivedm `blivedm/models/pb.py` @3bf17fe: top 1 uid, 2 uname,
//!   3 face, 5 guard_level, 8 medal_info{1 target_id, 4 anchor_roomid,
//!   5 medal_level, 6 medal_name}, 9 blind_gift{3 original_gift_name,
//!   6 original_gift_price}, 10 gift_list; item 1 gift_id, 2 gift_name, 3 num,
//!   5 price, 7 total_coin, 8 coin_type, 9 tid, 10 timestamp, 12 (blivedm: rnd),
//!   18 action, 35 gift_info{1 img_basic};
//! * Starlwr/StarBot `protobuf/SendGiftV2.java` @5add0b7: blind 2 original_gift_id,
//!   item 6 discount_price, 13 wealth_info{1 level}, 15 sender_uinfo{1 uid, 2 base};
//! * read here off the three real captures in `tests/fixtures/bilibili/` next to StarBot's
//!   V1 samples of the same gifts: item 11 super_batch_gift_num, 12 = V1's
//!   `batch_combo_id` (`batch:gift:combo_id:…`), 13 combo_resources_id,
//!   14 combo_total_coin, 15 combo_stay_time, 16 magnification (float),
//!   29 receive_user_info{1 uname, 2 uid}, 36 the opened gift's price (V1
//!   `blind_gift.gift_tip_price`); blind 1 config id, 5 `"爆出"`; medal 11
//!   is_lighted, 12 guard_level; gift_info 2 webp, 5 gif (URL suffixes).
//! * medal 3 anchor_uname: the research note's list only (absent from the captures).

use base64::Engine;
use serde_json::{json, Map, Value};

/// `SEND_GIFT_V2.data.pb`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SendGiftBroadcast {
    #[prost(uint64, tag = "1")]
    pub uid: u64,
    #[prost(string, tag = "2")]
    pub uname: String,
    #[prost(string, tag = "3")]
    pub face: String,
    #[prost(string, tag = "4")]
    pub name_color: String,
    #[prost(uint64, tag = "5")]
    pub guard_level: u64,
    /// The medal the sender wears (may belong to another room).
    #[prost(message, optional, tag = "8")]
    pub medal_info: Option<MedalInfo>,
    /// Present when the items came out of a blind box.
    #[prost(message, optional, tag = "9")]
    pub blind_gift: Option<BlindGift>,
    /// Each item is one gift with its own `tid`.
    #[prost(message, repeated, tag = "10")]
    pub gift_list: Vec<GiftItem>,
    #[prost(message, optional, tag = "13")]
    pub wealth_info: Option<WealthInfo>,
    #[prost(message, optional, tag = "15")]
    pub sender_uinfo: Option<UserInfo>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MedalInfo {
    /// The medal's anchor uid.
    #[prost(uint64, tag = "1")]
    pub target_id: u64,
    #[prost(string, tag = "3")]
    pub anchor_uname: String,
    #[prost(uint64, tag = "4")]
    pub anchor_roomid: u64,
    #[prost(uint64, tag = "5")]
    pub medal_level: u64,
    #[prost(string, tag = "6")]
    pub medal_name: String,
    #[prost(uint64, tag = "11")]
    pub is_lighted: u64,
    #[prost(uint64, tag = "12")]
    pub guard_level: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BlindGift {
    #[prost(uint64, tag = "1")]
    pub blind_gift_config_id: u64,
    /// The box's gift id.
    #[prost(uint64, tag = "2")]
    pub original_gift_id: u64,
    #[prost(string, tag = "3")]
    pub original_gift_name: String,
    #[prost(string, tag = "5")]
    pub gift_action: String,
    /// The box's unit price (gold), what was paid per box.
    #[prost(uint64, tag = "6")]
    pub original_gift_price: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GiftItem {
    #[prost(uint64, tag = "1")]
    pub gift_id: u64,
    #[prost(string, tag = "2")]
    pub gift_name: String,
    #[prost(uint64, tag = "3")]
    pub num: u64,
    /// Unit price; for a blind box, the opened gift's.
    #[prost(uint64, tag = "5")]
    pub price: u64,
    #[prost(uint64, tag = "6")]
    pub discount_price: u64,
    /// What was paid for this item (gold: 1000 = ¥1); a box's price × num for blind boxes.
    #[prost(uint64, tag = "7")]
    pub total_coin: u64,
    /// `"gold"` or `"silver"`.
    #[prost(string, tag = "8")]
    pub coin_type: String,
    #[prost(string, tag = "9")]
    pub tid: String,
    #[prost(uint64, tag = "10")]
    pub timestamp: u64,
    #[prost(uint64, tag = "11")]
    pub super_batch_gift_num: u64,
    /// V1's `batch_combo_id` (`batch:gift:combo_id:…`, or a UUID); blivedm calls it `rnd`.
    #[prost(string, tag = "12")]
    pub batch_combo_id: String,
    #[prost(uint64, tag = "13")]
    pub combo_resources_id: u64,
    #[prost(uint64, tag = "14")]
    pub combo_total_coin: u64,
    #[prost(uint64, tag = "15")]
    pub combo_stay_time: u64,
    #[prost(float, tag = "16")]
    pub magnification: f32,
    #[prost(string, tag = "18")]
    pub action: String,
    #[prost(message, optional, tag = "29")]
    pub receive_user_info: Option<ReceiveUserInfo>,
    #[prost(message, optional, tag = "35")]
    pub gift_info: Option<GiftMaterial>,
    /// The opened gift's price (V1 `blind_gift.gift_tip_price`).
    #[prost(uint64, tag = "36")]
    pub gift_tip_price: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReceiveUserInfo {
    #[prost(string, tag = "1")]
    pub uname: String,
    #[prost(uint64, tag = "2")]
    pub uid: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GiftMaterial {
    #[prost(string, tag = "1")]
    pub img_basic: String,
    #[prost(string, tag = "2")]
    pub webp: String,
    #[prost(string, tag = "5")]
    pub gif: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WealthInfo {
    #[prost(uint64, tag = "1")]
    pub level: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UserInfo {
    #[prost(uint64, tag = "1")]
    pub uid: u64,
    #[prost(message, optional, tag = "2")]
    pub base: Option<UserBase>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UserBase {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub face: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GiftV2Error {
    #[error("data.pb is missing or not a string")]
    NoPb,
    #[error("data.pb is not base64")]
    Base64,
    #[error("data.pb is not a SendGiftBroadcast: {0}")]
    Protobuf(String),
    #[error("the message carries no gift item")]
    NoItems,
    #[error("gift item {index} has no {field}")]
    MissingField { index: usize, field: &'static str },
}

/// Decodes `data.pb` (standard base64, padding optional).
pub fn decode_pb(pb: &str) -> Result<SendGiftBroadcast, GiftV2Error> {
    use base64::engine::{
        general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig,
    };
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bytes = LENIENT.decode(pb.trim()).map_err(|_| GiftV2Error::Base64)?;
    <SendGiftBroadcast as prost::Message>::decode(bytes.as_slice())
        .map_err(|e| GiftV2Error::Protobuf(e.to_string()))
}

/// One classic `SEND_GIFT.data` object per gift item. An item without a gift
/// id, a positive num or a coin type fails the whole message (the JSON
/// parser would refuse it too).
pub fn send_gift_data(b: &SendGiftBroadcast) -> Result<Vec<Value>, GiftV2Error> {
    if b.gift_list.is_empty() {
        return Err(GiftV2Error::NoItems);
    }
    let sender = b.sender_uinfo.clone().unwrap_or_default();
    let sender_base = sender.base.clone().unwrap_or_default();
    let uid = if b.uid != 0 { b.uid } else { sender.uid };
    let uname = if b.uname.is_empty() {
        &sender_base.name
    } else {
        &b.uname
    };
    let face = if b.face.is_empty() {
        &sender_base.face
    } else {
        &b.face
    };
    let blind = b
        .blind_gift
        .as_ref()
        .filter(|g| g.original_gift_id != 0 || !g.original_gift_name.is_empty());
    let medal = b.medal_info.clone().unwrap_or_default();
    let mut out = Vec::with_capacity(b.gift_list.len());
    for (index, item) in b.gift_list.iter().enumerate() {
        let missing = |field| GiftV2Error::MissingField { index, field };
        if item.gift_id == 0 {
            return Err(missing("gift_id"));
        }
        if item.num == 0 {
            return Err(missing("num"));
        }
        if item.coin_type.is_empty() {
            return Err(missing("coin_type"));
        }
        let blind_gift = match blind {
            Some(g) => json!({
                "blind_gift_config_id": g.blind_gift_config_id,
                "original_gift_id": g.original_gift_id,
                "original_gift_name": g.original_gift_name,
                "gift_action": g.gift_action,
                "original_gift_price": g.original_gift_price,
                "gift_tip_price": if item.gift_tip_price > 0 { item.gift_tip_price } else { item.price },
            }),
            None => Value::Null,
        };
        let receiver = item.receive_user_info.clone().unwrap_or_default();
        let info = item.gift_info.clone().unwrap_or_default();
        out.push(json!({
            "uid": uid,
            "uname": uname,
            "face": face,
            "name_color": b.name_color,
            "guard_level": b.guard_level,
            "giftId": item.gift_id,
            "giftName": item.gift_name,
            "num": item.num,
            "price": item.price,
            "discount_price": item.discount_price,
            "total_coin": item.total_coin,
            "coin_type": item.coin_type,
            "tid": item.tid,
            "timestamp": item.timestamp,
            "action": item.action,
            "batch_combo_id": item.batch_combo_id,
            "super_batch_gift_num": item.super_batch_gift_num,
            "combo_resources_id": item.combo_resources_id,
            "combo_total_coin": item.combo_total_coin,
            "combo_stay_time": item.combo_stay_time,
            "magnification": item.magnification,
            "blind_gift": blind_gift,
            "gift_info": {"img_basic": info.img_basic, "webp": info.webp, "gif": info.gif},
            "medal_info": {
                "target_id": medal.target_id,
                "anchor_uname": medal.anchor_uname,
                "anchor_roomid": medal.anchor_roomid,
                "medal_level": medal.medal_level,
                "medal_name": medal.medal_name,
                "is_lighted": medal.is_lighted,
                "guard_level": medal.guard_level,
            },
            "receive_user_info": {"uid": receiver.uid, "uname": receiver.uname},
            "sender_uinfo": {"uid": uid, "base": {"name": uname, "face": face}},
            "wealth_level": b.wealth_info.as_ref().map_or(0, |w| w.level),
        }));
    }
    Ok(out)
}

/// A whole `SEND_GIFT_V2` message → `SEND_GIFT` messages, one per item. The
/// envelope's other fields (`received_at`, `msg_id`, `send_time`, …) and
/// `data.dmscore` are copied onto each.
pub fn send_gift_messages(msg: &Value) -> Result<Vec<Value>, GiftV2Error> {
    let pb = msg["data"]["pb"].as_str().ok_or(GiftV2Error::NoPb)?;
    let datas = send_gift_data(&decode_pb(pb)?)?;
    let envelope: Map<String, Value> = msg
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| *k != "cmd" && *k != "data")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    Ok(datas
        .into_iter()
        .map(|mut data| {
            if let Some(score) = msg["data"].get("dmscore") {
                data["dmscore"] = score.clone();
            }
            let mut m = envelope.clone();
            m.insert("cmd".into(), Value::from("SEND_GIFT"));
            m.insert("data".into(), data);
            Value::Object(m)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let p = format!(
            "{}/tests/fixtures/bilibili/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    /// What tidelog's `bilibili::parse_one` demands of a `SEND_GIFT`, and the key it derives.
    fn tidelog_key(m: &Value) -> String {
        assert_eq!(m["cmd"], "SEND_GIFT");
        let d = &m["data"];
        assert!(d["uid"].is_i64(), "uid");
        assert!(d["giftId"].is_i64(), "giftId");
        assert!(d["num"].as_i64().unwrap() > 0, "num");
        assert!(d["price"].as_i64().unwrap() >= 0, "price");
        assert!(d["total_coin"].as_i64().unwrap() >= 0, "total_coin");
        assert!(["gold", "silver"].contains(&d["coin_type"].as_str().unwrap()));
        match &d["blind_gift"] {
            Value::Null => {}
            b => {
                assert!(b["original_gift_id"].is_i64());
                assert!(b["original_gift_price"].as_i64().unwrap() >= 0);
                assert!(b["original_gift_name"].is_string());
            }
        }
        assert!(d["uname"].is_string() && d["giftName"].is_string());
        let tid = d["tid"].as_str().unwrap();
        assert!(!tid.is_empty() && tid != "0");
        format!("gift:{tid}")
    }

    #[test]
    fn real_gold_gift() {
        let out = send_gift_messages(&fixture("starbot_send_gift_v2_gold.json")).unwrap();
        assert_eq!(out.len(), 1);
        let d = &out[0]["data"];
        assert_eq!(tidelog_key(&out[0]), "gift:4812888751724338176");
        assert_eq!(d["uid"], 3546837514455634u64);
        assert_eq!(d["uname"], "Ceriselune");
        assert_eq!(
            (d["giftId"].as_u64(), d["giftName"].as_str()),
            (Some(31164), Some("粉丝团灯牌"))
        );
        assert_eq!(
            (
                d["num"].as_u64(),
                d["price"].as_u64(),
                d["total_coin"].as_u64()
            ),
            (Some(1), Some(100), Some(100))
        );
        assert_eq!(d["coin_type"], "gold");
        assert_eq!(d["timestamp"], 1788426528);
        assert_eq!(d["blind_gift"], Value::Null);
        assert_eq!(d["action"], "投喂");
        assert_eq!(
            d["batch_combo_id"],
            "batch:gift:combo_id:3546837514455634:1893062922:31164:1788426528.6057"
        );
        assert_eq!(
            d["receive_user_info"],
            json!({"uid": 1893062922u64, "uname": "可可小宅"})
        );
        assert_eq!(d["wealth_level"], 32);
        assert!(d["gift_info"]["img_basic"]
            .as_str()
            .unwrap()
            .ends_with(".png"));
    }

    #[test]
    fn real_silver_gift() {
        let out = send_gift_messages(&fixture("starbot_send_gift_v2_silver.json")).unwrap();
        assert_eq!(out.len(), 1);
        let d = &out[0]["data"];
        assert_eq!(tidelog_key(&out[0]), "gift:4813392376817167872");
        assert_eq!(
            (d["uid"].as_u64(), d["uname"].as_str()),
            (Some(9232442), Some("饼゜"))
        );
        assert_eq!(
            (d["giftId"].as_u64(), d["coin_type"].as_str()),
            (Some(31738), Some("silver"))
        );
        assert_eq!(
            (d["price"].as_u64(), d["total_coin"].as_u64()),
            (Some(1000), Some(1000))
        );
        assert_eq!(d["medal_info"]["medal_name"], "腿玩年");
        assert_eq!(d["medal_info"]["medal_level"], 29);
    }

    #[test]
    fn real_blind_box_with_two_items() {
        let out = send_gift_messages(&fixture("starbot_send_gift_v2_blind_box.json")).unwrap();
        assert_eq!(out.len(), 2);
        let keys: Vec<_> = out.iter().map(tidelog_key).collect();
        assert_eq!(
            keys,
            ["gift:4813379508524699137", "gift:4813379508524699136"]
        );
        for (m, (id, name, price)) in out
            .iter()
            .zip([(35464, "甜蜜契约", 35000), (35463, "星光点点", 20000)])
        {
            let d = &m["data"];
            assert_eq!(
                (d["uid"].as_u64(), d["uname"].as_str()),
                (Some(48692754), Some("白礼的魔法胖次"))
            );
            assert_eq!(d["guard_level"], 2);
            assert_eq!(
                (d["giftId"].as_u64(), d["giftName"].as_str()),
                (Some(id), Some(name))
            );
            assert_eq!(
                (d["num"].as_u64(), d["price"].as_u64()),
                (Some(5), Some(price))
            );
            // paid: 5 boxes × 33000, whatever came out
            assert_eq!(d["total_coin"], 165000);
            assert_eq!(d["coin_type"], "gold");
            let b = &d["blind_gift"];
            assert_eq!(b["original_gift_id"], 35461);
            assert_eq!(b["original_gift_name"], "羁绊宝盒");
            assert_eq!(b["original_gift_price"], 33000);
            assert_eq!(b["gift_action"], "爆出");
            assert_eq!(b["gift_tip_price"], price);
            assert_eq!(d["timestamp"], 1788543534);
        }
    }

    #[test]
    fn envelope_fields_are_kept() {
        let mut m = fixture("starbot_send_gift_v2_gold.json");
        m["received_at"] = json!(1788426528123u64);
        m["data"]["dmscore"] = json!(56);
        let out = send_gift_messages(&m).unwrap();
        assert_eq!(out[0]["received_at"], 1788426528123u64);
        assert_eq!(out[0]["data"]["dmscore"], 56);
    }

    #[test]
    fn bad_payloads_are_errors() {
        assert_eq!(
            send_gift_messages(&json!({"cmd":"SEND_GIFT_V2","data":{}})),
            Err(GiftV2Error::NoPb)
        );
        assert_eq!(
            send_gift_messages(&json!({"data":{"pb":"@@@"}})),
            Err(GiftV2Error::Base64)
        );
        assert!(matches!(
            send_gift_messages(&json!({"data":{"pb":"CgP/"}})),
            Err(GiftV2Error::Protobuf(_))
        ));
        // an empty message has no items
        assert_eq!(
            send_gift_messages(&json!({"data":{"pb":""}})),
            Err(GiftV2Error::NoItems)
        );
        // an item without coin_type
        let b = SendGiftBroadcast {
            uid: 1,
            gift_list: vec![GiftItem {
                gift_id: 1,
                num: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        let pb =
            base64::engine::general_purpose::STANDARD.encode(prost::Message::encode_to_vec(&b));
        assert_eq!(
            send_gift_messages(&json!({"data":{"pb": pb}})),
            Err(GiftV2Error::MissingField {
                index: 0,
                field: "coin_type"
            })
        );
        // unpadded base64 is accepted
        let m = fixture("starbot_send_gift_v2_gold.json");
        let unpadded = m["data"]["pb"]
            .as_str()
            .unwrap()
            .trim_end_matches('=')
            .to_owned();
        assert!(send_gift_messages(&json!({"data":{"pb": unpadded}})).is_ok());
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let real = base64::engine::general_purpose::STANDARD
            .decode(
                fixture("starbot_send_gift_v2_blind_box.json")["data"]["pb"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
        for _ in 0..5000 {
            let mut b = real.clone();
            for _ in 0..rng.gen_range(1..5) {
                let i = rng.gen_range(0..b.len());
                b[i] = rng.gen();
            }
            b.truncate(rng.gen_range(0..=b.len()));
            let pb = base64::engine::general_purpose::STANDARD.encode(&b);
            let _ = send_gift_messages(&json!({"data":{"pb": pb}}));
        }
    }
}
