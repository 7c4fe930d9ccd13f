//! Counts every HTTP request the SDK sends (retries included) and the body bytes each way,
//! as the metrics of [`crate::observe`]. An interceptor sees the requests on the wire, so
//! the counts are what S3 bills, whichever segstore method sent them.

use aws_sdk_s3::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;

use crate::observe;

/// The interceptor that feeds [`observe::S3_REQUESTS`] and the byte counters.
#[derive(Debug)]
pub(super) struct RequestMeter;

impl Intercept for RequestMeter {
    fn name(&self) -> &'static str {
        "segstore-request-meter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let headers = request.headers();
        let kind = kind_of(request.method(), request.uri(), |name| {
            headers.get(name).is_some()
        });
        observe::count_as(observe::S3_REQUESTS, "kind", kind, 1);
        if let Some(len) = content_length(headers.get("content-length")) {
            observe::count(observe::S3_BYTES_SENT, len);
        }
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(len) = content_length(context.response().headers().get("content-length")) {
            observe::count(observe::S3_BYTES_RECEIVED, len);
        }
        Ok(())
    }
}

fn content_length(value: Option<&str>) -> Option<u64> {
    value?.trim().parse().ok()
}

/// The kind of an S3 request, from its method, query and headers.
fn kind_of(method: &str, uri: &str, has_header: impl Fn(&str) -> bool) -> &'static str {
    let query = uri.split_once('?').map_or("", |(_, q)| q);
    let has = |param: &str| {
        query
            .split('&')
            .any(|p| p == param || p.starts_with(&format!("{param}=")))
    };
    match method {
        "GET" if has("list-type") || has("uploads") => "list",
        "GET" if has_header("range") => "get_range",
        "GET" => "get",
        "HEAD" => "head",
        "PUT" if has("partNumber") && has_header("x-amz-copy-source") => "upload_part_copy",
        "PUT" if has("partNumber") => "upload_part",
        "PUT" if has_header("x-amz-copy-source") => "copy",
        "PUT" if has_header("if-none-match") => "put_if_absent",
        "PUT" => "put",
        "POST" if has("uploads") => "create_multipart",
        "POST" if has("uploadId") => "complete_multipart",
        "DELETE" if has("uploadId") => "abort_multipart",
        "DELETE" => "delete",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classified_by_method_query_and_headers() {
        let none = |_: &str| false;
        let range = |h: &str| h == "range";
        let copy = |h: &str| h == "x-amz-copy-source";
        let create = |h: &str| h == "if-none-match";
        type Headers<'a> = &'a dyn Fn(&str) -> bool;
        let cases: [(&str, &str, Headers, &str); 13] = [
            ("GET", "http://h/b/k", &none, "get"),
            ("GET", "http://h/b/k", &range, "get_range"),
            ("GET", "http://h/b?list-type=2&prefix=x", &none, "list"),
            ("HEAD", "http://h/b/k", &none, "head"),
            ("PUT", "http://h/b/k", &none, "put"),
            ("PUT", "http://h/b/k", &create, "put_if_absent"),
            ("PUT", "http://h/b/k", &copy, "copy"),
            (
                "PUT",
                "http://h/b/k?partNumber=2&uploadId=u",
                &none,
                "upload_part",
            ),
            (
                "PUT",
                "http://h/b/k?partNumber=2&uploadId=u",
                &copy,
                "upload_part_copy",
            ),
            ("POST", "http://h/b/k?uploads", &none, "create_multipart"),
            (
                "POST",
                "http://h/b/k?uploadId=u",
                &none,
                "complete_multipart",
            ),
            (
                "DELETE",
                "http://h/b/k?uploadId=u",
                &none,
                "abort_multipart",
            ),
            ("DELETE", "http://h/b/k", &none, "delete"),
        ];
        for (method, uri, headers, kind) in cases {
            assert_eq!(kind_of(method, uri, headers), kind, "{method} {uri}");
        }
        assert_eq!(content_length(Some(" 42")), Some(42));
        assert_eq!(content_length(Some("x")), None);
    }
}
