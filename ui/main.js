// Tertulia's window, entry point. Plain ES modules, no framework, no build step: the backend
// (src-tauri) forwards every core client event as "chat-event"; events.js turns each into
// view updates. Peer text only ever goes through textContent.
//
// Modules: validate, invite, mention, text, paging, conversation, links (pure, unit-tested
// with node --test); dom, tauri, prefs, session (shared helpers); start, room, log, items,
// people, connection, typing, composer, dialogs, thread (groups, days), opener (links), away
// (title count, mute), files (file lines, previews, attach/drop/paste) (views); filemeta
// (sizes, types; pure); events (core event -> views).
import { $, showError } from "./dom.js";
import { hasBackend, listen } from "./tauri.js";
import { errorText } from "./text.js";
import { initLanguage, t } from "./i18n.js";
import { recall } from "./prefs.js";
import { initStart } from "./start.js";
import { initRoom, abandonRoom } from "./room.js";
import { initLog } from "./log.js";
import { initPeople } from "./people.js";
import { initComposer } from "./composer.js";
import { initDialogs } from "./dialogs.js";
import { onChatEvent } from "./events.js";
import { initLinks } from "./opener.js";
import { initAway } from "./away.js";
import { initFiles, listenFiles } from "./files.js";
import { listenInternet } from "./internet.js";
import { notice } from "./log.js";

async function main() {
  initLanguage(recall("lang"));
  initStart();
  initComposer();
  initLog();
  initRoom();
  initPeople();
  initDialogs({ onNickCancel: abandonRoom });
  initLinks($("log"), (text) => notice(text, false));
  initAway();
  initFiles();
  if (!hasBackend()) { showError("join-error", t("app.no_backend")); return; }
  try {
    await listen("chat-event", (e) => onChatEvent(e.payload));
    await listenFiles();
    await listenInternet();
  } catch (e) {
    showError("join-error", t("app.no_events", { error: errorText(e) }));
  }
  $("host-nick").focus();
}

main();
