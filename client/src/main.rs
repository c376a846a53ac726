//! Mounts the Relaycast app into the page.

fn main() {
    // The theme goes on before the first paint, so a dark page never flashes light.
    relaycast_client::components::theme::apply(relaycast_client::components::theme::current());
    yew::Renderer::<relaycast_client::App>::new().render();
}
