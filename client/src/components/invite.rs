//! "Invite": the room's link, a button that copies it (and says so), and a QR code so a
//! phone can join by pointing its camera at the screen.

use super::icons::{icon, Icon};
use crate::browser;
use qrcode::render::svg;
use qrcode::QrCode;
use yew::prelude::*;

/// The link as an SVG QR code (dark on light, whatever the theme: scanners need contrast),
/// or `None` if it is too long for one.
pub fn qr_svg(link: &str) -> Option<String> {
    let code = QrCode::new(link.as_bytes()).ok()?;
    let image = code
        .render::<svg::Color>()
        .min_dimensions(176, 176)
        .dark_color(svg::Color("#111111"))
        .light_color(svg::Color("#ffffff"))
        .build();
    // The renderer writes an XML declaration, which has no place inside HTML.
    image.find("<svg").map(|start| image[start..].to_owned())
}

#[derive(Debug, Properties, PartialEq)]
pub struct InviteProps {
    pub link: String,
}

#[function_component(Invite)]
pub fn invite(p: &InviteProps) -> Html {
    let open = use_state(|| false);
    let copied = use_state(|| None::<bool>);
    let toggle = {
        let (open, copied) = (open.clone(), copied.clone());
        Callback::from(move |_: MouseEvent| {
            open.set(!*open);
            copied.set(None);
        })
    };
    let copy = {
        let (link, copied) = (p.link.clone(), copied.clone());
        Callback::from(move |_: MouseEvent| {
            let (link, copied) = (link.clone(), copied.clone());
            yew::platform::spawn_local(async move { copied.set(Some(browser::copy_text(&link).await)) });
        })
    };
    let onkeydown = {
        let open = open.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Escape" {
                open.set(false);
            }
        })
    };
    html! {
        <div class="menu-anchor invite" {onkeydown}>
            <button type="button" id="invite" aria-expanded={open.to_string()} aria-controls="invite-panel" onclick={toggle}>
                { icon(Icon::Link) }<span>{ "Invite" }</span>
            </button>
            if *open {
                <div id="invite-panel" class="popover" role="dialog" aria-label="Invite people">
                    <label for="invite-link">{ "Anyone with this link can join" }</label>
                    <div class="row">
                        <input id="invite-link" class="share" readonly=true value={p.link.clone()} />
                        <button type="button" id="copy-link" class="primary" onclick={copy}>{ "Copy link" }</button>
                    </div>
                    <p id="copy-feedback" class="hint" role="status">
                        { match *copied {
                            Some(true) => "Copied: paste it anywhere.",
                            Some(false) => "The browser would not copy: select the link and copy it.",
                            None => "",
                        } }
                    </p>
                    if let Some(svg) = qr_svg(&p.link) {
                        <figure id="invite-qr" class="qr">
                            { Html::from_html_unchecked(AttrValue::from(svg)) }
                            <figcaption>{ "Scan with a phone to join" }</figcaption>
                        </figure>
                    }
                </div>
            }
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_link_makes_an_inline_svg_qr_code() {
        let svg = qr_svg("https://meet.example.com/r/team-standup").expect("fits");
        assert!(svg.starts_with("<svg"), "no XML declaration inside HTML");
        assert!(svg.contains("#111111") && svg.contains("#ffffff"));
        assert!(qr_svg(&"x".repeat(5000)).is_none(), "too long for a QR code: none, no panic");
    }
}
