fn main() {
    // Release builds embed the pages: rebuild when they change.
    println!("cargo:rerun-if-changed=assets");
}
