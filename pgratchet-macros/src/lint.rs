//! The review at build time (feature `lint`): every denied finding of `.migrate.toml`'s rules is
//! a compile error naming the file, the line, the rule, why it is dangerous and what to do
//! instead. Warnings are the CLI's (`pgratchet lint`): a proc macro cannot warn on stable.

use std::path::Path;

use pgratchet_core::lint::{
    self, config::FILE_NAME, Config, Finding, Source, INVALID_ALLOW, UNUSED_ALLOW,
};
use pgratchet_core::loader::LoadedMigration;
use proc_macro2::{Span, TokenStream};
use quote::quote;

use crate::expand::combine;

/// Reviews the loaded set; on success, the tokens that make the embedded set carry what the review
/// read (and make cargo rebuild when `.migrate.toml` changes).
pub(crate) fn review(
    dir: &Path,
    literal: &str,
    migrations: &[LoadedMigration],
    list: TokenStream,
    span: Span,
) -> syn::Result<TokenStream> {
    let config_text =
        lint::read_config(dir).map_err(|problem| syn::Error::new(span, problem.message))?;
    let config = match &config_text {
        Some(text) => Config::parse(text).map_err(|problems| {
            combine(span, problems.iter().map(|problem| problem.message.clone()))
        })?,
        None => Config::default(),
    };
    let sources = migrations.iter().flat_map(|migration| {
        let up = std::iter::once((&migration.up, false));
        let down = migration.down.as_ref().map(|down| (down, true));
        up.chain(down).map(|(script, down)| Source {
            version: migration.version,
            path: &script.path,
            sql: &script.sql,
            no_transaction: script.no_transaction,
            down,
        })
    });
    let review = lint::review(&config, sources);
    let denied: Vec<String> = review.denied().map(explain).collect();
    if !denied.is_empty() {
        return Err(combine(span, denied));
    }
    let config = match &config_text {
        Some(_) => {
            let path = dir.join(FILE_NAME);
            let path = path.to_string_lossy();
            quote!(::core::option::Option::Some(::core::include_str!(#path)))
        }
        None => quote!(::core::option::Option::None),
    };
    Ok(quote!(::pgratchet::__private::Migrations::from_static_reviewed(#list, #literal, #config)))
}

/// A denied finding as a compile error: where, which rule, why, and the way out.
fn explain(finding: &Finding) -> String {
    let mut message = if finding.rule == INVALID_ALLOW {
        format!(
            "`{}` line {}: {}",
            finding.file, finding.line, finding.message
        )
    } else {
        format!(
            "`{}` line {}: {} is denied in `{FILE_NAME}`: {}",
            finding.file, finding.line, finding.rule, finding.message
        )
    };
    if let Some(help) = &finding.help {
        message.push_str(&format!("\n  help: {help}"));
    }
    if let Some(url) = finding.docs_url() {
        message.push_str(&format!("\n  see: {url}"));
    }
    let way_out = match finding.rule.as_str() {
        INVALID_ALLOW => None,
        UNUSED_ALLOW => Some(format!("or stop denying `{UNUSED_ALLOW}` in `{FILE_NAME}`")),
        rule => Some(format!(
            "if it is safe here, say why on the line before the statement: \
             `-- migrate:allow {rule} -- <reason>`"
        )),
    };
    if let Some(way_out) = way_out {
        message.push_str(&format!("\n  {way_out}"));
    }
    message
}
