//! The `ferry` binary; all behaviour lives in [`ferry::cli`].

fn main() {
    std::process::exit(ferry::cli::main());
}
