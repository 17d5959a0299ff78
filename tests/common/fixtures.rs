//! One test case per DBOS fixture, so that one failing release does not hide the others.

/// Generates a module `$case` holding one `#[tokio::test]` per listed fixture, each
/// calling `$case(Fixture::<fixture>)` (an `async fn` next to the macro call):
///
/// ```ignore
/// per_fixture!(reads_the_depth: Py340, Py2290);
/// async fn reads_the_depth(fixture: Fixture) { ... }
/// ```
///
/// gives the cases `reads_the_depth::Py340` and `reads_the_depth::Py2290`.
#[allow(unused_macros)] // each test binary uses its own subset
macro_rules! per_fixture {
    ($case:ident: $($fixture:ident),+ $(,)?) => {
        mod $case {
            $(
                #[tokio::test]
                #[allow(non_snake_case)]
                async fn $fixture() {
                    super::$case($crate::common::Fixture::$fixture).await;
                }
            )+
        }
    };
}

pub(crate) use per_fixture;
