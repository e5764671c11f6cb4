//! relay.json may carry `//` comments and trailing commas, as the example `haven-relay config
//! init` writes does: they are blanked out before serde_json reads the file. Blanked, not
//! removed, so serde's line and column numbers still point at the user's text.

/// `text` with comments replaced by spaces and trailing commas (before `}` or `]`) by a space.
pub fn strip(text: &str) -> String {
    // Some editors start a UTF-8 file with a byte-order mark; JSON has no place for it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut in_string = false;
    // The index of a comma not yet followed by anything but blanks and comments.
    let mut pending_comma: Option<usize> = None;
    while i < out.len() {
        let c = out[i];
        if in_string {
            match c {
                '\\' => i += 1,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '/' && out.get(i + 1) == Some(&'/') {
            while i < out.len() && out[i] != '\n' {
                out[i] = ' ';
                i += 1;
            }
            continue;
        } else if c == ',' {
            pending_comma = Some(i);
        } else if c == '}' || c == ']' {
            if let Some(comma) = pending_comma.take() {
                out[comma] = ' ';
            }
        } else if !c.is_whitespace() {
            pending_comma = None;
            in_string = c == '"';
        }
        i += 1;
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::strip;

    fn parse(text: &str) -> serde_json::Value {
        serde_json::from_str(&strip(text)).unwrap()
    }

    #[test]
    fn comments_and_trailing_commas_go_and_strings_stay() {
        let v = parse(
            "{\n  // a comment\n  \"a\": \"x // not a comment, }\", // trailing\n  \"b\": [1, 2,],\n  // \"c\": 3,\n}\n",
        );
        assert_eq!(v, serde_json::json!({"a": "x // not a comment, }", "b": [1, 2]}));
        assert_eq!(parse(r#"{"q": "a \" , ]"}"#), serde_json::json!({"q": "a \" , ]"}));
        // Only comments: an empty object.
        assert_eq!(parse("{\n // \"x\": 1,\n}"), serde_json::json!({}));
    }

    #[test]
    fn errors_still_point_at_the_right_line() {
        let err = serde_json::from_str::<serde_json::Value>(&strip("{\n // note\n \"a\": nope\n}")).unwrap_err();
        assert_eq!(err.line(), 3);
    }
}
