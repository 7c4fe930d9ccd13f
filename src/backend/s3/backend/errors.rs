//! Turns AWS SDK errors into segstore's typed [`Error`]s.
//!
//! Callers first [`classify`] an SDK error into a [`Failure`], look at its [`Kind`] where
//! the kind changes what they do (a 412 on a conditional create is an answer, not an
//! error), and otherwise convert it with [`Failure::into_error`].
//!
//! Nothing here formats a request: the SDK's errors describe responses and connections,
//! and credentials never travel over the wire, so no message can contain a secret.

use std::fmt;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::error::{BoxError, Error};

/// What kind of failure an S3 request met, as far as segstore's callers care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// 404 for a key (or an unspecific 404, as HEAD responses have no body).
    NotFound,
    /// The bucket does not exist.
    NoSuchBucket,
    /// 403 or an authentication error code.
    Denied,
    /// 412: a conditional request's condition failed.
    PreconditionFailed,
    /// 409: a concurrent conditional write to the same key was in progress; this request
    /// was rejected and may be retried.
    Conflict,
    /// 416: a ranged read started past the end.
    InvalidRange,
    /// 501: the server does not implement a feature the request used.
    NotImplemented,
    /// 503 SlowDown: throttled; the request was not applied.
    Throttled,
    /// No response: connection refused or lost, DNS failure, timeout. The request may or may
    /// not have reached the server.
    Unreachable,
    /// Anything else, including 5xx answers and throttling after retries.
    Other,
}

/// A classified SDK error, still carrying the original for `source`.
#[derive(Debug)]
pub(super) struct Failure {
    pub kind: Kind,
    pub status: Option<u16>,
    message: String,
    source: BoxError,
}

/// Classifies any SDK operation error.
pub(super) fn classify<E>(err: SdkError<E>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_owned);
    let server_message = err.message().map(str::to_owned);
    let kind = match &err {
        SdkError::TimeoutError(_) => Kind::Unreachable,
        SdkError::DispatchFailure(failure) if failure.is_user() => Kind::Other,
        SdkError::DispatchFailure(_) => Kind::Unreachable,
        SdkError::ConstructionFailure(_) => Kind::Other,
        _ => kind_of_response(status, code.as_deref()),
    };
    let message = match (&code, &server_message, status) {
        (Some(code), Some(msg), Some(status)) => format!("{code} (HTTP {status}): {msg}"),
        (Some(code), None, Some(status)) => format!("{code} (HTTP {status})"),
        (None, _, Some(403)) => {
            "HTTP 403: access denied (wrong credentials, or no permission for this bucket)".into()
        }
        (None, _, Some(status)) => format!("HTTP {status}"),
        // No response: the chain of causes (connection refused, timed out...) is the message.
        _ => cause_chain(&err),
    };
    Failure {
        kind,
        status,
        message,
        source: Box::new(err),
    }
}

/// True if a `CompleteMultipartUpload` "failed" only because its successful answer used a
/// root element the SDK does not expect: moto (5.2) answers
/// `<CompleteMultipartUploadResponse>` where S3 says `<CompleteMultipartUploadResult>`.
/// Only a 200 whose body is that success document counts; S3's "200 with an `<Error>`
/// body" stays an error.
pub(super) fn is_misnamed_complete_result<E>(err: &SdkError<E>) -> bool {
    let Some(response) = err.raw_response() else {
        return false;
    };
    let Some(body) = response.body().bytes() else {
        return false;
    };
    let body = String::from_utf8_lossy(body);
    response.status().as_u16() == 200
        && body.contains("<CompleteMultipartUploadResponse")
        && body.contains("<ETag>")
        && !body.contains("<Error>")
}

fn kind_of_response(status: Option<u16>, code: Option<&str>) -> Kind {
    match code {
        Some("NoSuchBucket") => return Kind::NoSuchBucket,
        Some("NoSuchKey" | "NotFound") => return Kind::NotFound,
        Some(
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidToken"
            | "ExpiredToken"
            | "TokenRefreshRequired"
            | "AllAccessDisabled"
            | "AccountProblem",
        ) => return Kind::Denied,
        Some("PreconditionFailed") => return Kind::PreconditionFailed,
        Some("ConditionalRequestConflict") => return Kind::Conflict,
        Some("InvalidRange") => return Kind::InvalidRange,
        Some("NotImplemented") => return Kind::NotImplemented,
        Some("SlowDown") => return Kind::Throttled,
        _ => {}
    }
    match status {
        Some(404) => Kind::NotFound,
        Some(401 | 403) => Kind::Denied,
        Some(409) => Kind::Conflict,
        Some(412) => Kind::PreconditionFailed,
        Some(416) => Kind::InvalidRange,
        Some(501) => Kind::NotImplemented,
        _ => Kind::Other,
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Failure {
    /// A failure that is not an SDK error, such as a part-upload task that panicked.
    pub(super) fn other(message: impl Into<String>) -> Self {
        let message = message.into();
        Failure {
            kind: Kind::Other,
            status: None,
            source: message.clone().into(),
            message,
        }
    }

    /// A failure for an operation that never got an SDK error, such as a body stream that
    /// stalled past the timeout.
    pub(super) fn unreachable(message: impl Into<String>, source: BoxError) -> Self {
        Failure {
            kind: Kind::Unreachable,
            status: None,
            message: message.into(),
            source,
        }
    }

    /// Converts into the public error. `context` says what segstore was doing (including the
    /// key); `bucket` and `key` fill the variants that name them.
    pub(super) fn into_error(self, context: &str, bucket: &str, key: &str) -> Error {
        match self.kind {
            Kind::NotFound => Error::not_found(key),
            Kind::NoSuchBucket => Error::BucketNotFound {
                bucket: bucket.to_owned(),
            },
            Kind::Denied => Error::PermissionDenied {
                context: context.to_owned(),
                message: self.message,
            },
            Kind::NotImplemented => Error::Unsupported(format!(
                "{context}: the S3 server does not implement this request: {}",
                self.message
            )),
            Kind::Unreachable => Error::Unavailable {
                context: context.to_owned(),
                message: self.message,
                source: Some(self.source),
            },
            Kind::PreconditionFailed
            | Kind::Conflict
            | Kind::InvalidRange
            | Kind::Throttled
            | Kind::Other => Error::Backend {
                context: context.to_owned(),
                message: self.message,
                source: Some(self.source),
            },
        }
    }
}

/// An error and its causes as one line (`dispatch failure: io error: ... Connection
/// refused`): the SDK's own context display ends in a debug dump of its structures.
pub(super) fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_kinds() {
        assert_eq!(kind_of_response(Some(404), None), Kind::NotFound);
        assert_eq!(
            kind_of_response(Some(404), Some("NoSuchBucket")),
            Kind::NoSuchBucket
        );
        assert_eq!(
            kind_of_response(Some(403), Some("SignatureDoesNotMatch")),
            Kind::Denied
        );
        assert_eq!(kind_of_response(Some(403), None), Kind::Denied);
        assert_eq!(kind_of_response(Some(412), None), Kind::PreconditionFailed);
        assert_eq!(
            kind_of_response(Some(409), Some("ConditionalRequestConflict")),
            Kind::Conflict
        );
        assert_eq!(
            kind_of_response(Some(503), Some("SlowDown")),
            Kind::Throttled
        );
        assert_eq!(
            kind_of_response(Some(500), Some("InternalError")),
            Kind::Other
        );
    }
}
