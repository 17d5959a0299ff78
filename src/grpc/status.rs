//! The one place where library errors become gRPC statuses.

use tonic::{Code, Status};

use crate::error::Error;
use crate::quote::bounded_message;

/// The status code KEDA gets for `error`.
pub(crate) fn code_of(error: &Error) -> Code {
    match error {
        Error::InvalidMetadata { .. }
        | Error::InvalidSecretMetadata { .. }
        | Error::MissingMetadata(_)
        | Error::ConflictingMetadata(..)
        | Error::MetadataTooLarge { .. }
        | Error::UnknownDatabase(_) => Code::InvalidArgument,
        Error::UnknownMetric { .. } => Code::NotFound,
        Error::WorkerConcurrency(_) | Error::UnknownQueue { .. } | Error::Unsupported { .. } => {
            Code::FailedPrecondition
        }
        Error::PermissionDenied(_) => Code::PermissionDenied,
        Error::Exhausted(_) => Code::ResourceExhausted,
        Error::Unavailable(_) => Code::Unavailable,
    }
}

/// How a call ends when it does not answer: refused for a domain reason, or a method of
/// the contract this scaler does not offer (a transport matter, so not in [`Error`]).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The domain's refusal.
    #[error(transparent)]
    Refused(#[from] Error),
    /// The method is part of the contract but not offered.
    #[error("{0}")]
    Unimplemented(&'static str),
}

impl CallError {
    /// A short, stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Refused(error) => error.kind(),
            Self::Unimplemented(_) => "unimplemented",
        }
    }
}

impl From<CallError> for Status {
    fn from(error: CallError) -> Self {
        let code = match &error {
            CallError::Refused(error) => code_of(error),
            CallError::Unimplemented(_) => Code::Unimplemented,
        };
        // Values in messages are already cut; this bounds the message as a whole, so that
        // every status fits the metadata limits of every gRPC client.
        Status::new(code, bounded_message(error.to_string()))
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        CallError::from(error).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_unavailable_and_bad_input_is_invalid_argument() {
        assert_eq!(
            Status::from(Error::Unavailable("down".into())).code(),
            Code::Unavailable
        );
        assert_eq!(
            Status::from(Error::MissingMetadata("queue is required")).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            Status::from(Error::UnknownDatabase("x".into())).code(),
            Code::InvalidArgument
        );
    }
}
