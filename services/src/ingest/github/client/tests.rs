//! Unit tests of the client's header handling: paging links, HTTP dates
//! and rate-limit waits.

use super::*;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).expect("header value"));
    }
    h
}

#[test]
fn next_links_become_paths_under_the_api_url() {
    let h = headers(&[(
        "link",
        "<https://api.github.com/repositories/23096959/issues?state=all&sort=updated&direction=desc&per_page=100&page=2>; rel=\"next\", \
         <https://api.github.com/repositories/23096959/issues?state=all&sort=updated&direction=desc&per_page=100&page=701>; rel=\"last\"",
    )]);
    assert_eq!(
        next_link(&h).as_deref(),
        Some(
            "/repositories/23096959/issues?state=all&sort=updated&direction=desc&per_page=100&page=2"
        )
    );
    let last_page = headers(&[(
        "link",
        "<https://api.github.com/repos/golang/go/issues/1/events?page=1>; rel=\"prev\", <https://api.github.com/repos/golang/go/issues/1/events?page=1>; rel=\"first\"",
    )]);
    assert_eq!(next_link(&last_page), None);
    assert_eq!(next_link(&HeaderMap::new()), None);
    // A GitHub Enterprise base path stays in the path.
    let ghe = headers(&[(
        "link",
        "<https://ghe.example.com/api/v3/repos/a/b/labels?page=3>; rel=\"next\"",
    )]);
    assert_eq!(
        next_link(&ghe).as_deref(),
        Some("/api/v3/repos/a/b/labels?page=3")
    );
}

#[test]
fn http_dates_parse_in_every_layout_go_accepts() {
    let want = Some(Time::from_unix(1_668_499_951));
    assert_eq!(parse_http_date("Tue, 15 Nov 2022 08:12:31 GMT"), want);
    assert_eq!(parse_http_date("Tuesday, 15-Nov-22 08:12:31 GMT"), want);
    assert_eq!(parse_http_date("Tue Nov 15 08:12:31 2022"), want);
    assert_eq!(
        parse_http_date("Fri Nov  2 15:53:59 2018"),
        Some(Time::from_unix(1_541_174_039))
    );
    assert_eq!(parse_http_date("2022-11-15T08:12:31Z"), None);
    assert_eq!(parse_http_date(""), None);
}

#[test]
fn rate_limits_are_recognised_and_waited_out() {
    let now = 1_700_000_000;
    let primary = headers(&[
        ("x-ratelimit-limit", "5000"),
        ("x-ratelimit-remaining", "0"),
        ("x-ratelimit-reset", "1700000030"),
    ]);
    assert_eq!(
        rate_limit_wait(403, &primary, now),
        Some(Duration::from_secs(31))
    );
    assert_eq!(
        rate_limit_wait(429, &primary, now),
        Some(Duration::from_secs(31))
    );
    // A reset already past still waits a second.
    assert_eq!(
        rate_limit_wait(403, &primary, now + 100),
        Some(Duration::from_secs(1))
    );
    let secondary = headers(&[("retry-after", "7")]);
    assert_eq!(
        rate_limit_wait(403, &secondary, now),
        Some(Duration::from_secs(7))
    );
    assert_eq!(
        rate_limit_wait(429, &HeaderMap::new(), now),
        Some(Duration::from_secs(60))
    );
    // A plain refusal, or a success with the budget spent, is no wait.
    let refused = headers(&[("x-ratelimit-remaining", "4999")]);
    assert_eq!(rate_limit_wait(403, &refused, now), None);
    assert_eq!(rate_limit_wait(200, &primary, now), None);
}

#[test]
fn the_shared_limiter_allows_a_burst_then_paces() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let limiter = RateLimiter::new(10.0);
    rt.block_on(async {
        // A full burst does not wait for the pace...
        let started = tokio::time::Instant::now();
        for _ in 0..10 {
            limiter.acquire().await;
        }
        let burst = started.elapsed();
        // ...the five after it go 100 ms apart: the last no sooner than
        // 500 ms after the burst began (sleeps never end early).
        for _ in 0..5 {
            limiter.acquire().await;
        }
        let paced = started.elapsed();
        assert!(paced >= Duration::from_millis(490), "{paced:?}");
        assert!(burst < paced);
    });
}

#[test]
fn an_unreachable_https_api_is_an_error_not_a_panic() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let options = ClientOptions {
        server_error_retries: 0,
        ..ClientOptions::default()
    };
    let result = rt.block_on(async {
        let client = GitHubClient::new("https://127.0.0.1:1", None, options)?;
        client
            .get("/repos/golang/go/labels", CachePolicy::Bypass)
            .await
    });
    assert!(result.is_err(), "nothing listens on port 1");
}
