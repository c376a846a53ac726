//! The side panel beside the stage: Chat, People and Files as tabs, with a badge on a tab
//! that is not open when something new arrived there.

use super::icons::{icon, Icon};
use yew::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Chat,
    People,
    Files,
}

impl Tab {
    const ALL: [Tab; 3] = [Tab::Chat, Tab::People, Tab::Files];

    fn id(self) -> &'static str {
        match self {
            Tab::Chat => "chat",
            Tab::People => "people",
            Tab::Files => "files",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Tab::Chat => "Chat",
            Tab::People => "People",
            Tab::Files => "Files",
        }
    }

    fn icon(self) -> Icon {
        match self {
            Tab::Chat => Icon::Chat,
            Tab::People => Icon::People,
            Tab::Files => Icon::File,
        }
    }
}

#[derive(Debug, Properties, PartialEq)]
pub struct SideProps {
    pub tab: Tab,
    pub ontab: Callback<Tab>,
    /// The unread messages' badge, new files' badge, and how many people are here.
    #[prop_or_default]
    pub chat_badge: Option<String>,
    #[prop_or_default]
    pub files_badge: Option<String>,
    pub people: usize,
    pub chat: Html,
    pub people_panel: Html,
    pub files: Html,
}

#[function_component(SidePanel)]
pub fn side_panel(p: &SideProps) -> Html {
    let tab_button = |tab: Tab| {
        let selected = p.tab == tab;
        let (badge, badge_label) = match tab {
            Tab::Chat => (p.chat_badge.clone(), "unread"),
            Tab::Files => (p.files_badge.clone(), "new"),
            Tab::People => (Some(p.people.to_string()), "here"),
        };
        let count_class = if tab == Tab::People { "count" } else { "badge" };
        html! {
            <button type="button" role="tab" id={format!("tab-{}", tab.id())} aria-selected={selected.to_string()}
                    aria-controls={format!("panel-{}", tab.id())} tabindex={if selected { "0" } else { "-1" }}
                    onclick={p.ontab.reform(move |_: MouseEvent| tab)}>
                { icon(tab.icon()) }<span>{ tab.label() }</span>
                if let Some(b) = badge {
                    // Hidden from the tab's own name, told after it.
                    <span class={count_class} aria-label={format!("{b} {badge_label}")}>{ b }</span>
                }
            </button>
        }
    };
    // Arrow keys move between tabs, as in any tab list.
    let onkeydown = {
        let (tab, ontab) = (p.tab, p.ontab.clone());
        Callback::from(move |e: KeyboardEvent| {
            let i = Tab::ALL.iter().position(|t| *t == tab).unwrap_or(0);
            let next = match e.key().as_str() {
                "ArrowRight" => Tab::ALL[(i + 1) % 3],
                "ArrowLeft" => Tab::ALL[(i + 2) % 3],
                _ => return,
            };
            e.prevent_default();
            ontab.emit(next);
            if let Some(el) = gloo_utils::document().get_element_by_id(&format!("tab-{}", next.id())) {
                let _ = wasm_bindgen::JsCast::unchecked_into::<web_sys::HtmlElement>(el).focus();
            }
        })
    };
    let panel = |tab: Tab, content: &Html| {
        html! {
            <div role="tabpanel" id={format!("panel-{}", tab.id())} class="tab-panel"
                 aria-labelledby={format!("tab-{}", tab.id())} hidden={p.tab != tab}>
                { content.clone() }
            </div>
        }
    };
    html! {
        <aside class="side" aria-label="Chat, people and files">
            <div class="tabs" role="tablist" aria-label="Side panel" {onkeydown}>
                { for Tab::ALL.into_iter().map(tab_button) }
            </div>
            { panel(Tab::Chat, &p.chat) }
            { panel(Tab::People, &p.people_panel) }
            { panel(Tab::Files, &p.files) }
        </aside>
    }
}
