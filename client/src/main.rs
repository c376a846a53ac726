//! Mounts the Relaycast app into the page.

fn main() {
    yew::Renderer::<relaycast_client::App>::new().render();
}
