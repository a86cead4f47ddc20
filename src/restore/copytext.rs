//! Reading Postgres COPY text format rows back into fields (for restoring single things,
//! such as function stacks, out of a snapshot's table data without a database round trip).

/// Splits one COPY text row (without its newline) into fields; `\N` is NULL.
pub fn fields(row: &str) -> Vec<Option<String>> {
    row.split('\t').map(|f| if f == "\\N" { None } else { Some(unescape(f)) }).collect()
}

/// Undoes COPY's backslash escapes: `\b \f \n \r \t \v \\`, octal `\NNN` and hex `\xHH`.
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 == bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let c = bytes[i + 1];
        i += 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                let mut n = 1;
                while n < 3 && i < bytes.len() && (b'0'..=b'7').contains(&bytes[i]) {
                    v = v * 8 + u32::from(bytes[i] - b'0');
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && i < bytes.len() && bytes[i].is_ascii_hexdigit() {
                    v = v * 16 + (bytes[i] as char).to_digit(16).expect("hex digit");
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_escapes() {
        let row = "1\t\\N\ta\\tb\\nc\\\\d\t\\101\\x42";
        assert_eq!(fields(row), vec![Some("1".into()), None, Some("a\tb\nc\\d".into()), Some("AB".into())]);
        assert_eq!(fields(""), vec![Some(String::new())]);
    }
}
