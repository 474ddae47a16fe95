//! Kubernetes `$(VAR)` expansion for env values, command and args
//! (`third_party/forked/golang/expansion`). Pure.
//!
//! `$(NAME)` becomes NAME's value when NAME is defined and stays as written when not;
//! `$$` is an escaped `$`; anything else is copied.

/// Expands `$(NAME)` references in `input` with `lookup`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let bytes = input.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' || i + 1 >= bytes.len() {
            i += 1;
            continue;
        }
        match bytes[i + 1] {
            b'$' => {
                out.push_str(&input[copied..i]);
                out.push('$');
                i += 2;
                copied = i;
            }
            b'(' => match input[i + 2..].find(')') {
                Some(len) => {
                    let name = &input[i + 2..i + 2 + len];
                    out.push_str(&input[copied..i]);
                    match lookup(name) {
                        Some(v) if !name.is_empty() => out.push_str(&v),
                        _ => out.push_str(&input[i..i + 3 + len]),
                    }
                    i += 3 + len;
                    copied = i;
                }
                None => i += 2,
            },
            _ => i += 1,
        }
    }
    out.push_str(&input[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn defined_variables_are_replaced() {
        assert_eq!(expand("x-$(A)-y", env), "x-alpha-y");
        assert_eq!(expand("$(A)$(A)", env), "alphaalpha");
        assert_eq!(expand("[$(EMPTY)]", env), "[]");
    }

    #[test]
    fn undefined_and_malformed_references_are_kept() {
        assert_eq!(expand("$(B)", env), "$(B)");
        assert_eq!(expand("$(A", env), "$(A");
        assert_eq!(expand("$A", env), "$A");
        assert_eq!(expand("cost $", env), "cost $");
        assert_eq!(expand("$()", env), "$()");
    }

    #[test]
    fn double_dollar_escapes() {
        assert_eq!(expand("$$(A)", env), "$(A)");
        assert_eq!(expand("$$$(A)", env), "$alpha");
        assert_eq!(expand("a$$b", env), "a$b");
    }
}
