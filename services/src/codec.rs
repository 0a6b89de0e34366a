//! Mutations as people read and write them: protobuf's canonical JSON
//! mapping and text format, driven by the schema's descriptor set.
//!
//! The log stores binary `maintpb.Mutation`s; this module converts one record
//! to and from JSON (one object per line, as `almanac log dump --json` prints
//! and `almanac log append --json` reads) and renders the text format that
//! Go's maintwatch prints. JSON input is strict: unknown field names are
//! errors, not silently dropped.

use anyhow::{Context as _, Result};
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, Kind, MessageDescriptor,
    ReflectMessage as _, Value,
};

/// Converts mutations between the wire format, JSON and text.
#[derive(Debug, Clone)]
pub struct MutationCodec {
    mutation: MessageDescriptor,
}

impl MutationCodec {
    /// Loads the schema compiled into `almanac-proto`.
    pub fn new() -> Result<MutationCodec> {
        let pool = DescriptorPool::decode(almanac_proto::FILE_DESCRIPTOR_SET)
            .context("decoding the compiled-in protobuf descriptor set")?;
        let mutation = pool
            .get_message_by_name(almanac_proto::MUTATION_MESSAGE)
            .context("the descriptor set lacks maintpb.Mutation")?;
        Ok(MutationCodec { mutation })
    }

    /// Decodes a stored record.
    pub fn decode(&self, payload: &[u8]) -> Result<DynamicMessage> {
        DynamicMessage::decode(self.mutation.clone(), payload)
            .context("record does not decode as maintpb.Mutation")
    }

    /// One line of canonical protobuf JSON.
    pub fn to_json(&self, payload: &[u8]) -> Result<String> {
        let msg = self.decode(payload)?;
        serde_json::to_string(&msg).context("rendering JSON")
    }

    /// The record in protobuf text format, one field per line, as Go's
    /// maintwatch prints mutations (`prototext.Format`).
    pub fn to_text(&self, payload: &[u8]) -> Result<String> {
        let msg = self.decode(payload)?;
        Ok(go_text(&msg))
    }

    /// Parses one JSON object (canonical mapping; proto field names are
    /// accepted too) into an encoded mutation.
    pub fn from_json(&self, json: &str) -> Result<Vec<u8>> {
        let mut de = serde_json::Deserializer::from_str(json);
        let msg = DynamicMessage::deserialize_with_options(
            self.mutation.clone(),
            &mut de,
            &DeserializeOptions::new().deny_unknown_fields(true),
        )
        .map_err(|e| anyhow::anyhow!("not a maintpb.Mutation in JSON: {e}"))?;
        de.end()
            .map_err(|e| anyhow::anyhow!("trailing data after the JSON object: {e}"))?;
        Ok(msg.encode_to_vec())
    }
}

/// Any message of the compiled-in schema, by full name, in Go's multi-line
/// text format (as `prototext.Format` prints it, one space after `name:`).
pub fn message_text(full_name: &str, bytes: &[u8]) -> Result<String> {
    let pool = DescriptorPool::decode(almanac_proto::FILE_DESCRIPTOR_SET)
        .context("decoding the compiled-in protobuf descriptor set")?;
    let desc = pool
        .get_message_by_name(full_name)
        .with_context(|| format!("the descriptor set lacks {full_name}"))?;
    let msg = DynamicMessage::decode(desc, bytes).with_context(|| format!("not a {full_name}"))?;
    Ok(go_text(&msg))
}

/// Go's `prototext.Format`: fields in declaration order, unset proto3
/// scalars omitted, nested messages as `name: {` blocks indented two
/// spaces, repeated fields as one entry per element, a newline after every
/// field. (Go randomly adds a second space after some colons to stop
/// byte-for-byte comparisons; this never does.)
pub fn go_text(msg: &DynamicMessage) -> String {
    let mut out = String::new();
    write_message(&mut out, msg, 0);
    out
}

fn write_message(out: &mut String, msg: &DynamicMessage, indent: usize) {
    for field in msg.descriptor().fields() {
        if !msg.has_field(&field) {
            continue;
        }
        let value = msg.get_field(&field);
        match value.as_ref() {
            Value::List(items) => {
                for item in items {
                    write_field(out, field.name(), item, &field.kind(), indent);
                }
            }
            Value::Map(map) => {
                let Kind::Message(entry) = field.kind() else {
                    continue;
                };
                let key_kind = entry.map_entry_key_field().kind();
                let value_kind = entry.map_entry_value_field().kind();
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                for (k, v) in entries {
                    push_indent(out, indent);
                    out.push_str(field.name());
                    out.push_str(": {\n");
                    write_field(out, "key", &Value::from(k.clone()), &key_kind, indent + 2);
                    write_field(out, "value", v, &value_kind, indent + 2);
                    push_indent(out, indent);
                    out.push_str("}\n");
                }
            }
            other => write_field(out, field.name(), other, &field.kind(), indent),
        }
    }
}

fn push_indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn write_field(out: &mut String, name: &str, value: &Value, kind: &Kind, indent: usize) {
    push_indent(out, indent);
    out.push_str(name);
    if let Value::Message(m) = value {
        out.push_str(": {\n");
        write_message(out, m, indent + 2);
        push_indent(out, indent);
        out.push_str("}\n");
    } else {
        out.push_str(": ");
        out.push_str(&scalar_text(value, kind));
        out.push('\n');
    }
}

fn scalar_text(value: &Value, kind: &Kind) -> String {
    match value {
        Value::Bool(b) => b.to_string(),
        Value::I32(v) => v.to_string(),
        Value::I64(v) => v.to_string(),
        Value::U32(v) => v.to_string(),
        Value::U64(v) => v.to_string(),
        Value::F32(v) => v.to_string(),
        Value::F64(v) => v.to_string(),
        Value::String(s) => quote(s.as_bytes()),
        Value::Bytes(b) => quote(b),
        Value::EnumNumber(n) => match kind {
            Kind::Enum(e) => e
                .get_value(*n)
                .map_or_else(|| n.to_string(), |v| v.name().to_owned()),
            _ => n.to_string(),
        },
        Value::Message(_) | Value::List(_) | Value::Map(_) => String::new(),
    }
}

/// A quoted text-format string: printable UTF-8 as is, the usual escapes,
/// other bytes as three-digit octal.
fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    out.push_str(&format!("\\{:03o}", c as u32));
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\{b:03o}"));
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use almanac_proto::pb::maintpb::{GithubIssueCommentMutation, GithubIssueMutation, Mutation};

    #[test]
    fn text_format_is_gos_multiline_shape() {
        let m = Mutation {
            github_issue: Some(GithubIssueMutation {
                owner: "golang".into(),
                repo: "go".into(),
                number: 7,
                comment: vec![
                    GithubIssueCommentMutation {
                        id: 1,
                        body: "line \"one\"\nline\ttwo\u{1}".into(),
                        ..Default::default()
                    },
                    GithubIssueCommentMutation {
                        id: 2,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = MutationCodec::new()
            .expect("codec")
            .to_text(&m.encode_to_vec())
            .expect("text");
        let want = r#"github_issue: {
  owner: "golang"
  repo: "go"
  number: 7
  comment: {
    id: 1
    body: "line \"one\"\nline\ttwo\001"
  }
  comment: {
    id: 2
  }
}
"#;
        assert_eq!(text, want);
    }
}
