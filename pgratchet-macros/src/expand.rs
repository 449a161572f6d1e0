//! Expansion of `embed_migrations!("dir")`: parse the literal, load the directory with
//! `pgratchet_core::loader`, and emit static data, or every problem as one combined error.

use std::path::{Path, PathBuf};

use pgratchet_core::loader::{self, LoadedMigration, LoadedScript};
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::LitStr;

/// Read before `CARGO_MANIFEST_DIR`, so tests built elsewhere (trybuild builds each case in its own
/// directory under `target/`) can say where relative migration paths start.
const MANIFEST_DIR_OVERRIDE: &str = "PGRATCHET_MANIFEST_DIR";

pub(crate) fn embed_migrations(input: TokenStream) -> TokenStream {
    match expand(input) {
        Ok(tokens) => tokens,
        // A block keeps several `compile_error!`s valid in expression position (`static M = ..`),
        // and its typed tail keeps rustc from adding a type mismatch to our messages.
        Err(error) => {
            let errors = error.to_compile_error();
            quote!({
                #errors
                ::pgratchet::__private::Migrations::from_static(&[])
            })
        }
    }
}

fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let literal: LitStr = syn::parse2(input.clone()).map_err(|error| {
        const MESSAGE: &str = "expected the migrations directory as a string literal, e.g. \
             `embed_migrations!(\"migrations\")`; a constant or a macro call such as \
             `concat!(..)` cannot be read by the macro";
        if input.is_empty() {
            // Nothing to point at but the call itself.
            syn::Error::new(error.span(), MESSAGE)
        } else {
            // The whole argument, not only its first token (`concat` of `concat!(..)`).
            syn::Error::new_spanned(&input, MESSAGE)
        }
    })?;
    let dir = resolve(&literal.value(), literal.span())?;
    let migrations = loader::load_dir(&dir).map_err(|problems| {
        combine(
            literal.span(),
            problems.into_iter().map(|problem| problem.message),
        )
    })?;
    let items = migrations.iter().map(migration_tokens);
    #[cfg(feature = "lint")]
    let set = crate::lint::review(
        &dir,
        &literal.value(),
        &migrations,
        quote!(MIGRATIONS),
        literal.span(),
    )?;
    #[cfg(not(feature = "lint"))]
    let set = quote!(::pgratchet::__private::Migrations::from_static(MIGRATIONS));
    Ok(quote!({
        const MIGRATIONS: &[::pgratchet::__private::Migration] = &[#(#items),*];
        #set
    }))
}

/// One error holding every message, each a `compile_error!` of its own at `span`.
pub(crate) fn combine(span: Span, messages: impl IntoIterator<Item = String>) -> syn::Error {
    let mut errors = messages
        .into_iter()
        .map(|message| syn::Error::new(span, message));
    // Callers never pass an empty list, but a macro must not panic on it.
    let first = errors
        .next()
        .unwrap_or_else(|| syn::Error::new(span, "the migrations directory could not be read"));
    errors.fold(first, |mut all, error| {
        all.combine(error);
        all
    })
}

fn resolve(relative: &str, span: Span) -> syn::Result<PathBuf> {
    let path = Path::new(relative);
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let base = std::env::var_os(MANIFEST_DIR_OVERRIDE)
        .or_else(|| std::env::var_os("CARGO_MANIFEST_DIR"))
        .ok_or_else(|| {
            syn::Error::new(
                span,
                "cannot resolve the migrations directory: CARGO_MANIFEST_DIR is not set; build with cargo or pass an absolute path",
            )
        })?;
    Ok(PathBuf::from(base).join(path))
}

fn migration_tokens(migration: &LoadedMigration) -> TokenStream {
    let version = migration.version;
    let name = &migration.name;
    let up = script_tokens(&migration.up);
    let down = match &migration.down {
        Some(down) => {
            let down = script_tokens(down);
            quote!(::core::option::Option::Some(#down))
        }
        None => quote!(::core::option::Option::None),
    };
    quote!(::pgratchet::__private::Migration::from_static(#version, #name, #up, #down))
}

fn script_tokens(script: &LoadedScript) -> TokenStream {
    let path = &script.path;
    let checksum = &script.checksum;
    let no_transaction = script.no_transaction;
    let abs_path = script.abs_path.to_string_lossy();
    // `include_str!` makes cargo rebuild when the file changes. A file with a BOM is embedded as
    // the stripped literal (the SQL we send must not start with U+FEFF) and still tracked through
    // `include_bytes!`.
    let sql = if script.had_bom {
        let sql = &script.sql;
        quote!({
            const _: &[u8] = ::core::include_bytes!(#abs_path);
            #sql
        })
    } else {
        quote!(::core::include_str!(#abs_path))
    };
    quote!(::pgratchet::__private::Script::from_static(#path, #sql, #checksum, #no_transaction))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(label: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("pgratchet-macros-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }

    #[test]
    fn expands_to_static_data_with_checksums() {
        let dir = temp_dir("ok");
        std::fs::write(dir.join("1_init.sql"), "CREATE TABLE t (id int);\n").expect("write");
        let input = format!("{:?}", dir.to_string_lossy());
        let output = embed_migrations(input.parse().expect("tokens")).to_string();
        assert!(
            output.contains("Migration :: from_static (1i64 , \"init\""),
            "{output}"
        );
        assert!(output.contains("include_str !"), "{output}");
        assert!(
            output.contains(&pgratchet_core::checksum::checksum_hex(
                b"CREATE TABLE t (id int);\n"
            )),
            "{output}"
        );
        assert!(!output.contains("compile_error"), "{output}");
    }

    #[test]
    fn reports_every_problem_in_one_block() {
        let dir = temp_dir("bad");
        std::fs::write(dir.join("V1_init.sql"), "SELECT 1;").expect("write");
        std::fs::write(dir.join("2 x.sql"), "SELECT 1;").expect("write");
        let input = format!("{:?}", dir.to_string_lossy());
        let output = embed_migrations(input.parse().expect("tokens")).to_string();
        assert_eq!(output.matches("compile_error").count(), 2, "{output}");
        assert!(output.starts_with('{'), "{output}");
        assert!(output.contains("V1__init.sql"), "{output}");
    }

    #[test]
    fn refuses_a_non_literal() {
        let output = embed_migrations(quote!(some_path)).to_string();
        assert!(output.contains("expected the migrations directory as a string literal"));
    }
}
