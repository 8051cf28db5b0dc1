//! SillyTavern character cards, as SillyTavern itself reads them
//! (`src/character-card-parser.js`, `src/endpoints/characters.js`): a JSON
//! card of spec `chara_card_v2` / `chara_card_v3` (`{"spec", "data":
//! {"name", "tags", …}}`) or a V1 card (`{"name", …}`); or a PNG whose
//! `tEXt` chunk `ccv3` (preferred) or `chara` holds the card as base64 JSON.

use base64::Engine;
use serde_json::Value;

/// The largest picture a card may carry.
pub const MAX_PIXELS: u64 = 4096 * 4096;
pub const MAX_SIDE: u32 = 8192;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CardError {
    #[error("not a PNG image")]
    NotPng,
    #[error("the PNG is damaged or truncated: {0}")]
    BadPng(String),
    #[error(
        "the picture is too large ({0}×{1} pixels; at most {MAX_PIXELS} pixels, {MAX_SIDE} a side)"
    )]
    TooManyPixels(u32, u32),
    #[error("the PNG holds no character card (no `chara` or `ccv3` text chunk)")]
    NoCard,
    #[error("the card is not valid: {0}")]
    BadCard(String),
}

/// What tidelog takes from a card.
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    pub name: String,
    pub tags: Vec<String>,
    /// the card's `create_date` as written (any of SillyTavern's forms), if any
    pub create_date: Option<String>,
    /// `chara_card_v3`, `chara_card_v2` or `v1`
    pub spec: String,
}

/// Reads a JSON card.
pub fn from_json(card: &Value) -> Result<Card, CardError> {
    let bad = |m: &str| CardError::BadCard(m.to_owned());
    let obj = card
        .as_object()
        .ok_or_else(|| bad("a card is a JSON object"))?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    // TavernAI and SillyTavern's copies wrote it as Unix milliseconds, a number
    let create_date = match obj.get("create_date") {
        Some(Value::Number(n)) => Some(n.to_string()),
        v => text(v),
    }
    .filter(|d| !d.trim().is_empty());
    if let Some(spec) = obj.get("spec") {
        let spec = spec
            .as_str()
            .ok_or_else(|| bad("`spec` must be a string"))?;
        if !matches!(spec, "chara_card_v2" | "chara_card_v3") {
            return Err(bad("`spec` must be chara_card_v2 or chara_card_v3"));
        }
        let data = obj
            .get("data")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("a V2/V3 card needs a `data` object"))?;
        let name = text(data.get("name"))
            .or_else(|| text(obj.get("name")))
            .ok_or_else(|| bad("the card has no `data.name`"))?;
        return Ok(Card {
            name,
            tags: tags(data.get("tags").or_else(|| obj.get("tags")))?,
            create_date,
            spec: spec.to_owned(),
        });
    }
    let name = text(obj.get("name")).ok_or_else(|| bad("the card has no `name`"))?;
    Ok(Card {
        name,
        tags: tags(obj.get("tags"))?,
        create_date,
        spec: "v1".into(),
    })
}

/// Tags as cards hold them: an array of strings, or (V1) one
/// comma-separated string.
fn tags(v: Option<&Value>) -> Result<Vec<String>, CardError> {
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::String(s)) => Ok(s
            .split(',')
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| CardError::BadCard("`tags` must hold strings".into()))
            })
            .collect(),
        Some(_) => Err(CardError::BadCard("`tags` must be a list".into())),
    }
}

/// Reads the card a PNG carries, decoding the whole picture (row by row,
/// within the pixel limits) so a damaged or truncated image is refused.
pub fn from_png(bytes: &[u8]) -> Result<(Card, Value), CardError> {
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err(CardError::NotPng);
    }
    let bad = |e: png::DecodingError| CardError::BadPng(e.to_string());
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .map_err(bad)?;
    let (w, h) = (reader.info().width, reader.info().height);
    if w > MAX_SIDE || h > MAX_SIDE || u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(CardError::TooManyPixels(w, h));
    }
    while reader.next_row().map_err(bad)?.is_some() {}
    reader.finish().map_err(bad)?;
    let chunks = &reader.info().uncompressed_latin1_text;
    let find = |k: &str| {
        chunks
            .iter()
            .find(|c| c.keyword.eq_ignore_ascii_case(k))
            .map(|c| c.text.clone())
    };
    let text = find("ccv3")
        .or_else(|| find("chara"))
        .ok_or(CardError::NoCard)?;
    let json = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| CardError::BadCard("the card chunk is not base64".into()))?;
    let value: Value = serde_json::from_slice(&json)
        .map_err(|e| CardError::BadCard(format!("the card chunk is not JSON: {e}")))?;
    Ok((from_json(&value)?, value))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A small PNG with `text` in a tEXt chunk `keyword` after the image
    /// data, as SillyTavern writes cards.
    pub(crate) fn card_png(keyword: &str, card: &Value, side: u32) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, side, side);
            enc.set_color(png::ColorType::Rgb);
            let mut w = enc.write_header().unwrap();
            w.write_image_data(&vec![200u8; (side * side * 3) as usize])
                .unwrap();
            let text = base64::engine::general_purpose::STANDARD.encode(card.to_string());
            w.write_text_chunk(&png::text_metadata::TEXtChunk::new(keyword, text))
                .unwrap();
            w.finish().unwrap();
        }
        out
    }

    #[test]
    fn v2_v3_and_v1_cards_give_name_tags_and_date() {
        let v2 = json!({"spec": "chara_card_v2", "spec_version": "2.0",
            "create_date": "2025-9-16 @21h 19m 03s 522ms",
            "data": {"name": "Kotohime", "tags": ["Touhou", "Princess"]}});
        let c = from_json(&v2).unwrap();
        assert_eq!(
            (c.name.as_str(), c.tags.len(), c.spec.as_str()),
            ("Kotohime", 2, "chara_card_v2")
        );
        assert_eq!(
            c.create_date.as_deref(),
            Some("2025-9-16 @21h 19m 03s 522ms")
        );
        let v1 = json!({"name": "Seraphina", "tags": "Fantasy, Magic", "description": "…"});
        let c = from_json(&v1).unwrap();
        assert_eq!(
            (c.name.as_str(), c.tags.clone(), c.spec.as_str()),
            (
                "Seraphina",
                vec!["Fantasy".to_string(), "Magic".to_string()],
                "v1"
            )
        );
        for bad in [
            json!([]),
            json!({"spec": "chara_card_v9", "data": {"name": "x"}}),
            json!({"spec": "chara_card_v2"}),
            json!({"description": "no name"}),
            json!({"name": "x", "tags": [1]}),
        ] {
            assert!(from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_png_card_is_read_from_its_chunk_and_a_damaged_one_is_refused() {
        let card = json!({"spec": "chara_card_v2", "data": {"name": "Kotohime", "tags": []}});
        let png = card_png("chara", &card, 8);
        assert_eq!(from_png(&png).unwrap().0.name, "Kotohime");
        // ccv3 wins over chara, as in SillyTavern
        let v3 = json!({"spec": "chara_card_v3", "data": {"name": "Kotohime v3"}});
        let mut both = card_png("chara", &card, 8);
        let extra = card_png("ccv3", &v3, 8);
        // graft the ccv3 text chunk (the last chunk before IEND) into the first
        let tail = |b: &[u8]| b.len() - 12;
        let text_start = find_chunk(&extra, b"tEXt");
        let chunk = extra[text_start..tail(&extra)].to_vec();
        let at = tail(&both);
        both.splice(at..at, chunk);
        assert_eq!(from_png(&both).unwrap().0.name, "Kotohime v3");
        assert_eq!(from_png(b"GIF89a....").unwrap_err(), CardError::NotPng);
        assert!(matches!(
            from_png(&png[..png.len() / 2]),
            Err(CardError::BadPng(_))
        ));
        let mut flipped = png.clone();
        let i = find_chunk(&flipped, b"IDAT") + 10;
        flipped[i] ^= 0xff;
        assert!(matches!(from_png(&flipped), Err(CardError::BadPng(_))));
        let plain = {
            let mut out = Vec::new();
            let mut enc = png::Encoder::new(&mut out, 2, 2);
            enc.set_color(png::ColorType::Rgb);
            let mut w = enc.write_header().unwrap();
            w.write_image_data(&[0u8; 12]).unwrap();
            w.finish().unwrap();
            out
        };
        assert_eq!(from_png(&plain).unwrap_err(), CardError::NoCard);
    }

    fn find_chunk(png: &[u8], kind: &[u8; 4]) -> usize {
        png.windows(4).position(|w| w == kind).unwrap() - 4
    }
}
