//! The `embed_migrations!` macro. Use it through the `pgratchet` crate, which documents it; this
//! crate is a thin shim so the expansion logic in `expand` stays testable with `proc-macro2`.
#![warn(missing_docs, unreachable_pub)]

mod expand;
#[cfg(feature = "lint")]
mod lint;

/// Embeds a migrations directory into the binary; see `pgratchet::embed_migrations!`.
#[proc_macro]
pub fn embed_migrations(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    expand::embed_migrations(input.into()).into()
}
