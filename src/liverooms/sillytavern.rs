//! SillyTavern chats as the anchor's client sends them: a JSON array of
//! messages (`{"name", "is_user", "send_date", "mes"}`), or the `.jsonl`
//! chat file SillyTavern saves (a header line `{"user_name",
//! "character_name", "create_date", "chat_metadata"}`, then one message per
//! line).

use serde_json::Value;

/// A message as it came, before its values are checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMessage {
    pub name: String,
    pub is_user: bool,
    /// hidden (SillyTavern's `is_system`): not shown to viewers
    pub is_system: bool,
    pub send_date: Option<Value>,
    pub mes: String,
    /// its line in a `.jsonl` file (from 1)
    pub line: Option<usize>,
}

/// Messages of at most this many per request.
pub const MAX_MESSAGES: usize = 2000;

fn message(i: usize, v: &Value) -> Result<RawMessage, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("message {i} is not an object"))?;
    let text = |k: &str| match obj.get(k) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Ok(String::new()),
        Some(_) => Err(format!("message {i}: `{k}` must be a string")),
    };
    let flag = |k: &str| match obj.get(k) {
        Some(Value::Bool(b)) => Ok(*b),
        None | Some(Value::Null) => Ok(false),
        Some(_) => Err(format!("message {i}: `{k}` must be true or false")),
    };
    let send_date = match obj.get("send_date") {
        None | Some(Value::Null) => None,
        Some(d @ (Value::String(_) | Value::Number(_))) => Some(d.clone()),
        Some(_) => {
            return Err(format!(
                "message {i}: `send_date` must be a string or a number"
            ))
        }
    };
    Ok(RawMessage {
        name: text("name")?,
        is_user: flag("is_user")?,
        is_system: flag("is_system")?,
        send_date,
        mes: text("mes")?,
        line: None,
    })
}

/// A JSON array of messages.
pub fn from_array(v: &Value) -> Result<Vec<RawMessage>, String> {
    let items = v
        .as_array()
        .ok_or("the body must be a JSON array of messages")?;
    if items.len() > MAX_MESSAGES {
        return Err(format!("at most {MAX_MESSAGES} messages per request"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, m)| message(i, m))
        .collect()
}

/// A `.jsonl` chat file: its header line (the one without `mes`, first) is
/// skipped, blank lines too.
pub fn from_jsonl(text: &str) -> Result<Vec<RawMessage>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: not JSON ({e})", i + 1))?;
        let header = i == 0 && v.get("mes").is_none() && v.get("user_name").is_some();
        if header {
            continue;
        }
        let mut m = message(i, &v)?;
        m.line = Some(i + 1);
        out.push(m);
        if out.len() > MAX_MESSAGES {
            return Err(format!("at most {MAX_MESSAGES} messages per request"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_chat_file_skips_its_header_and_reads_each_message() {
        let file = concat!(
            r#"{"user_name":"pride88","character_name":"Kotohime","create_date":"2025-9-21@15h33m05s","chat_metadata":{}}"#,
            "\n",
            r#"{"name":"Kotohime","is_user":false,"is_system":false,"send_date":"September 21, 2025 3:33pm","mes":"Welcome!","extra":{}}"#,
            "\n\n",
            r#"{"name":"pride88","is_user":true,"send_date":"September 21, 2025 3:34pm","mes":"Hi"}"#,
            "\n"
        );
        let m = from_jsonl(file).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].name.as_str(), m[0].is_user, m[0].mes.as_str()),
            ("Kotohime", false, "Welcome!")
        );
        assert!(m[1].is_user);
        assert!(from_jsonl("{not json").is_err());
    }

    #[test]
    fn messages_of_the_wrong_shape_are_refused_by_index() {
        assert!(from_array(&json!({"mes": "x"})).is_err());
        let e = from_array(&json!([{"name": "a", "mes": "x"}, {"name": 1}])).unwrap_err();
        assert!(e.contains("message 1"), "{e}");
        let e = from_array(&json!([{"name": "a", "mes": "x", "send_date": {}}])).unwrap_err();
        assert!(e.contains("send_date"), "{e}");
        let m =
            from_array(&json!([{"name": "a", "mes": "x", "send_date": 1758440000000i64}])).unwrap();
        assert_eq!(m[0].send_date, Some(json!(1758440000000i64)));
    }
}
