//! Credentials inside upstream URLs (`https://user:password@host/v1`). Switchyard never sends
//! them upstream (it does no Basic auth from a URL), refuses to store a password in a runtime
//! model's `api_base`, and leaves it out wherever it shows a URL.

/// Where `url`'s userinfo (`user:password`, without the `@`) starts and ends, if it has one.
fn userinfo(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority.rfind('@').map(|at| (start, start + at))
}

/// `url` names a password: `scheme://user:password@host...`.
pub fn has_password(url: &str) -> bool {
    userinfo(url).is_some_and(|(from, to)| url[from..to].contains(':'))
}

/// `url` without the password in its userinfo (`scheme://user@host...`), or without the
/// userinfo when only a password was there; unchanged when it names none.
pub fn without_password(url: &str) -> String {
    match userinfo(url) {
        Some((from, to)) => match url[from..to].split_once(':') {
            Some(("", _)) => format!("{}{}", &url[..from], &url[to + 1..]),
            Some((user, _)) => format!("{}{user}{}", &url[..from], &url[to..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// `url` for display, with any userinfo shown as `…` (`scheme://…@host...`).
pub fn without_userinfo(url: &str) -> String {
    match userinfo(url) {
        Some((from, to)) => format!("{}…{}", &url[..from], &url[to..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_found_only_in_the_authority() {
        assert!(has_password("https://user:pw@api.example/v1"));
        assert!(has_password("http://:pw@h:8000"));
        assert!(!has_password("https://user@api.example/v1"));
        assert!(!has_password("http://127.0.0.1:9101/v1"));
        assert!(!has_password("http://h/p:q@r"));
        assert!(!has_password("http://h?x=a:b@c"));
        assert!(!has_password("not a url: a:b@c"));
    }

    #[test]
    fn a_password_is_left_out_and_the_rest_kept() {
        assert_eq!(
            without_password("https://user:pw@api.example/v1"),
            "https://user@api.example/v1"
        );
        assert_eq!(without_password("http://:pw@h:8000/v1"), "http://h:8000/v1");
        assert_eq!(
            without_password("https://a:b:c@h/v1?k=x@y"),
            "https://a@h/v1?k=x@y"
        );
        assert_eq!(without_password("http://u@h/v1"), "http://u@h/v1");
        assert_eq!(without_password("http://h/p:q@r"), "http://h/p:q@r");
    }

    #[test]
    fn credentials_in_upstream_urls_are_hidden_for_display() {
        assert_eq!(
            without_userinfo("https://user:pw@api.example/v1"),
            "https://…@api.example/v1"
        );
        assert_eq!(
            without_userinfo("http://127.0.0.1:9101/v1"),
            "http://127.0.0.1:9101/v1"
        );
        assert_eq!(without_userinfo("http://h/p@q"), "http://h/p@q");
    }
}
