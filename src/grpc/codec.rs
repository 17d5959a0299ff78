//! The protobuf codec of every service the scaler generates: prost's, with a small encode
//! buffer. tonic allocates that buffer when a call starts and keeps it until the call ends;
//! its default, 8 KiB, is most of what an open `StreamIsActive` stream costs, for answers
//! of a few bytes (KEDA keeps one stream per external-push ScaledObject open for good).

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Bytes each call's encode and decode buffers start with; larger messages (an
/// explanation) grow them in steps of this size.
const BUFFER_SIZE: usize = 256;
/// tonic's default: how much ready stream output is batched into one write.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`ProstCodec`] with [`BUFFER_SIZE`] buffers; `build.rs` names it for the generated code.
#[derive(Debug, Clone)]
pub(crate) struct SmallBufferCodec<T, U> {
    types: PhantomData<(T, U)>,
}

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self { types: PhantomData }
    }
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}
