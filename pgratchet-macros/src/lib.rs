//! The `embed_migrations!` macro and the `#[test]` attribute of `pgratchet-test`. Use them through
//! the `pgratchet` and `pgratchet-test` crates, which document them; this crate is a thin shim so
//! the expansion logic (`expand`, `test_attr`) stays testable with `proc-macro2`.
#![warn(missing_docs, unreachable_pub)]

mod expand;
#[cfg(feature = "lint")]
mod lint;
mod test_attr;

/// A test with a migrated database of its own; use it as `#[pgratchet_test::test(..)]`, which
/// documents it.
#[proc_macro_attribute]
pub fn test(
    args: proc_macro::TokenStream,
    item: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    test_attr::test(args.into(), item.into()).into()
}

/// Embeds a migrations directory into the binary; see `pgratchet::embed_migrations!`.
#[proc_macro]
pub fn embed_migrations(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    expand::embed_migrations(input.into()).into()
}
