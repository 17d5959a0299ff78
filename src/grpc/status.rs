//! The one place where library errors become gRPC statuses.

use tonic::{Code, Status};

use crate::error::Error;
use crate::quote::bounded_message;

/// The status code KEDA gets for `error`.
pub fn code_of(error: &Error) -> Code {
    match error {
        Error::InvalidMetadata { .. }
        | Error::InvalidSecretMetadata { .. }
        | Error::MissingMetadata(_)
        | Error::ConflictingMetadata(..)
        | Error::MetadataTooLarge { .. }
        | Error::UnknownDatabase(_) => Code::InvalidArgument,
        Error::UnknownMetric { .. } => Code::NotFound,
        Error::MissingWorkerConcurrency(_)
        | Error::UnknownQueue { .. }
        | Error::Unsupported { .. } => Code::FailedPrecondition,
        Error::PermissionDenied(_) => Code::PermissionDenied,
        Error::Exhausted(_) => Code::ResourceExhausted,
        Error::Unavailable(_) => Code::Unavailable,
        Error::Unimplemented(_) => Code::Unimplemented,
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        // Values in messages are already cut; this bounds the message as a whole, so that
        // every status fits the metadata limits of every gRPC client.
        Status::new(code_of(&error), bounded_message(error.to_string()))
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
