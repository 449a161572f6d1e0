//! Expansion of `#[pgratchet_test::test(migrations = M, fixtures("a"), flavor = "...")]`: a
//! `#[test]` that runs the `async fn` on a database of its own through
//! `::pgratchet_test::__private::run`. Every mistake is a compile error saying what to write.
//!
//! The function and the arguments are read token by token rather than with syn's `full`
//! feature: `embed_migrations!` shares this crate, and a service's clean build should not pay
//! for a full Rust parser it does not need.

use std::path::PathBuf;

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::{LitInt, LitStr};

const USAGE: &str = "write `#[pgratchet_test::test(migrations = MIGRATIONS)]` (or `migrator = \
                     <expr>`), optionally with `fixtures(\"name\", ..)` and `flavor = \
                     \"multi_thread\"`";

pub(crate) fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(args, item.clone()) {
        Ok(tokens) => tokens,
        // The function stays, so that the only errors are ours.
        Err(errors) => {
            let errors = errors.iter().map(syn::Error::to_compile_error);
            quote!(#(#errors)* #item)
        }
    }
}

fn expand(args: TokenStream, item: TokenStream) -> Result<TokenStream, Vec<syn::Error>> {
    let args = parse_args(args);
    let function = parse_fn(item);
    let (args, function) = match (args, function) {
        (Ok(args), Ok(function)) => (args, function),
        (args, function) => {
            let mut errors = args.err().unwrap_or_default();
            errors.extend(function.err().unwrap_or_default());
            return Err(errors);
        }
    };
    let Function {
        attrs,
        vis,
        name,
        inputs,
        output,
        body,
    } = function;
    let name_text = name.to_string();
    let inner = format_ident!("__pgratchet_test_{}", name);
    let should_panic = attrs.clone().into_iter().any(|token| match token {
        TokenTree::Group(group) => group
            .stream()
            .into_iter()
            .next()
            .is_some_and(|first| first.to_string() == "should_panic"),
        _ => false,
    });
    let Args {
        setup,
        fixtures,
        flavor,
    } = args;
    Ok(quote! {
        #[::core::prelude::v1::test]
        #attrs
        #vis fn #name() {
            async fn #inner #inputs #output #body
            ::pgratchet_test::__private::run(
                ::core::concat!(::core::module_path!(), "::", #name_text),
                ::pgratchet_test::__private::Setup::from(#setup),
                &[#(#fixtures),*],
                #flavor,
                #should_panic,
                #inner,
            )
        }
    })
}

/// The parts of the `async fn` the expansion keeps.
struct Function {
    attrs: TokenStream,
    vis: TokenStream,
    name: Ident,
    inputs: Group,
    output: TokenStream,
    body: Group,
}

fn parse_fn(item: TokenStream) -> Result<Function, Vec<syn::Error>> {
    let mut tokens = item.into_iter().peekable();
    let mut attrs = TokenStream::new();
    let mut vis = TokenStream::new();
    let mut errors = Vec::new();
    while let Some(TokenTree::Punct(pound)) = tokens.peek() {
        if pound.as_char() != '#' {
            break;
        }
        attrs.extend(tokens.next());
        attrs.extend(tokens.next());
    }
    if matches!(tokens.peek(), Some(TokenTree::Ident(ident)) if ident == "pub") {
        vis.extend(tokens.next());
        if matches!(tokens.peek(), Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::Parenthesis)
        {
            vis.extend(tokens.next());
        }
    }
    let mut is_async = false;
    let fn_span = loop {
        match tokens.next() {
            Some(TokenTree::Ident(ident)) if ident == "async" => is_async = true,
            Some(TokenTree::Ident(ident)) if ident == "fn" => break ident.span(),
            Some(other) => {
                return Err(vec![syn::Error::new(
                    other.span(),
                    "#[pgratchet_test::test] goes on an `async fn`",
                )])
            }
            None => {
                return Err(vec![syn::Error::new(
                    Span::call_site(),
                    "#[pgratchet_test::test] goes on an `async fn`",
                )])
            }
        }
    };
    if !is_async {
        errors.push(syn::Error::new(
            fn_span,
            "a #[pgratchet_test::test] must be an `async fn`",
        ));
    }
    let Some(TokenTree::Ident(name)) = tokens.next() else {
        return Err(vec![syn::Error::new(
            fn_span,
            "expected the function's name",
        )]);
    };
    let inputs = match tokens.next() {
        Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::Parenthesis => group,
        Some(other) => {
            errors.push(syn::Error::new(
                other.span(),
                "a #[pgratchet_test::test] cannot be generic",
            ));
            return Err(errors);
        }
        None => return Err(vec![syn::Error::new(name.span(), "expected `(..)`")]),
    };
    if top_level_items(inputs.stream()).len() != 1 {
        errors.push(syn::Error::new(
            inputs.span(),
            "a #[pgratchet_test::test] takes one argument: `pool: deadpool_postgres::Pool` or \
             `client: tokio_postgres::Client`",
        ));
    }
    let rest: Vec<TokenTree> = tokens.collect();
    let Some((TokenTree::Group(body), output)) = rest.split_last() else {
        return Err(vec![syn::Error::new(
            name.span(),
            "expected the function's body",
        )]);
    };
    if body.delimiter() != Delimiter::Brace {
        errors.push(syn::Error::new(body.span(), "expected the function's body"));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Function {
        attrs,
        vis,
        name,
        inputs,
        output: output.iter().cloned().collect(),
        body: body.clone(),
    })
}

/// What migrates, the fixtures, the runtime.
struct Args {
    setup: TokenStream,
    fixtures: Vec<TokenStream>,
    flavor: TokenStream,
}

fn parse_args(args: TokenStream) -> Result<Args, Vec<syn::Error>> {
    let mut setup = None;
    let mut fixtures = Vec::new();
    let mut multi_thread = false;
    let mut workers: Option<usize> = None;
    let mut errors = Vec::new();
    for item in top_level_items(args) {
        let mut tokens = item.clone().into_iter();
        let Some(TokenTree::Ident(key)) = tokens.next() else {
            errors.push(syn::Error::new_spanned(
                &item,
                format!("unknown argument: {USAGE}"),
            ));
            continue;
        };
        let key_text = key.to_string();
        let next = tokens.next();
        let value: TokenStream = tokens.collect();
        match (key_text.as_str(), next) {
            ("migrations" | "migrator", Some(TokenTree::Punct(eq)))
                if eq.as_char() == '=' && !value.is_empty() =>
            {
                if setup.is_some() {
                    errors.push(syn::Error::new(
                        key.span(),
                        "give either `migrations` or `migrator`, once",
                    ));
                } else if key_text == "migrations" {
                    setup = Some(quote!(&#value));
                } else {
                    setup = Some(value);
                }
            }
            ("fixtures", Some(TokenTree::Group(list)))
                if list.delimiter() == Delimiter::Parenthesis =>
            {
                for name in top_level_items(list.stream()) {
                    match syn::parse2::<LitStr>(name.clone()) {
                        Ok(literal) => match fixture(&literal) {
                            Ok(tokens) => fixtures.push(tokens),
                            Err(error) => errors.push(error),
                        },
                        Err(_) => errors.push(syn::Error::new_spanned(
                            &name,
                            "fixtures are named by string literals: `fixtures(\"users\", \"orders\")`",
                        )),
                    }
                }
            }
            ("flavor", Some(TokenTree::Punct(eq))) if eq.as_char() == '=' => {
                match syn::parse2::<LitStr>(value.clone()).map(|text| text.value()) {
                    Ok(text) if text == "multi_thread" => multi_thread = true,
                    Ok(text) if text == "current_thread" => multi_thread = false,
                    _ => errors.push(syn::Error::new_spanned(
                        &value,
                        "`flavor` is \"current_thread\" (the default) or \"multi_thread\"",
                    )),
                }
            }
            ("worker_threads", Some(TokenTree::Punct(eq))) if eq.as_char() == '=' => {
                match syn::parse2::<LitInt>(value.clone()).and_then(|int| int.base10_parse()) {
                    Ok(count) => workers = Some(count),
                    Err(_) => errors.push(syn::Error::new_spanned(
                        &value,
                        "`worker_threads` is a number, e.g. `worker_threads = 2`",
                    )),
                }
            }
            _ => errors.push(syn::Error::new_spanned(
                &item,
                format!("unknown argument: {USAGE}"),
            )),
        }
    }
    if workers.is_some() && !multi_thread {
        errors.push(syn::Error::new(
            Span::call_site(),
            "`worker_threads` needs `flavor = \"multi_thread\"`",
        ));
    }
    if setup.is_none() {
        errors.push(syn::Error::new(
            Span::call_site(),
            format!("no migrations: {USAGE}"),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let flavor = if multi_thread {
        let workers = workers.unwrap_or(0);
        quote!(::pgratchet_test::__private::Flavor::MultiThread(#workers))
    } else {
        quote!(::pgratchet_test::__private::Flavor::CurrentThread)
    };
    Ok(Args {
        setup: setup.unwrap_or_default(),
        fixtures,
        flavor,
    })
}

/// `(name, include_str!("<manifest dir>/fixtures/<name>.sql"))`, or why the file is missing.
fn fixture(literal: &LitStr) -> syn::Result<TokenStream> {
    let name = literal.value();
    let path = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join("fixtures")
        .join(format!("{name}.sql"));
    if !path.is_file() {
        return Err(syn::Error::new(
            literal.span(),
            format!(
                "fixture `{name}`: there is no file `{}`; fixtures are `fixtures/<name>.sql` \
                 beside the crate's Cargo.toml",
                path.display()
            ),
        ));
    }
    let path = path.to_string_lossy();
    Ok(quote_spanned!(literal.span()=> (#name, ::core::include_str!(#path))))
}

/// The comma-separated items of `tokens` (commas inside groups do not count), empty ones left
/// out (a trailing comma).
fn top_level_items(tokens: TokenStream) -> Vec<TokenStream> {
    let mut items = vec![TokenStream::new()];
    for token in tokens {
        match &token {
            TokenTree::Punct(punct) if punct.as_char() == ',' => items.push(TokenStream::new()),
            _ => items.last_mut().expect("never empty").extend([token]),
        }
    }
    items.retain(|item| !item.is_empty());
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_to_a_test_that_runs_the_body() {
        let output = test(
            quote!(
                migrations = MIGRATIONS,
                flavor = "multi_thread",
                worker_threads = 2
            ),
            quote!(
                #[ignore]
                async fn a_test(pool: deadpool_postgres::Pool) -> Result<(), String> {
                    Ok(())
                }
            ),
        )
        .to_string();
        assert!(
            output.contains(":: core :: prelude :: v1 :: test"),
            "{output}"
        );
        assert!(output.contains("# [ignore]"), "{output}");
        assert!(
            output.contains("MultiThread (2usize) , false ,"),
            "{output}"
        );
        assert!(output.contains("Setup :: from (& MIGRATIONS)"), "{output}");
        assert!(
            output.contains("Flavor :: MultiThread (2usize)"),
            "{output}"
        );
        assert!(
            output.contains("async fn __pgratchet_test_a_test (pool : deadpool_postgres :: Pool) -> Result < () , String >"),
            "{output}"
        );
        assert!(!output.contains("compile_error"), "{output}");
    }

    #[test]
    fn a_should_panic_test_does_not_keep_its_database() {
        let output = test(
            quote!(migrations = MIGRATIONS),
            quote!(
                #[should_panic(expected = "no")]
                async fn a_test(pool: deadpool_postgres::Pool) {}
            ),
        )
        .to_string();
        assert!(
            output.contains("Flavor :: CurrentThread , true ,"),
            "{output}"
        );
    }

    #[test]
    fn reports_every_mistake() {
        let output = test(
            quote!(fixtures("no_such_fixture"), flavor = "fast", colour = 1),
            quote!(
                fn not_async(a: i32, b: i32) {}
            ),
        )
        .to_string();
        for expected in [
            "fixture `no_such_fixture`: there is no file",
            "`flavor` is",
            "unknown argument",
            "no migrations",
            "must be an `async fn`",
            "takes one argument",
        ] {
            assert!(output.contains(expected), "{expected}: {output}");
        }
        // The function stays, so rustc adds no errors of its own about it.
        assert!(output.contains("fn not_async"), "{output}");
    }
}
