//! Every human-readable text `tertulia-chat` prints, in English and Spanish: one method of
//! [`Lang`] per message. The language follows the system's (`LC_ALL`, then `LC_MESSAGES`,
//! then `LANG`: `es…` is Spanish, anything else English) unless `--lang` says otherwise.
//! `--json` output is not text for people and never goes through here; neither does clap's
//! `--help`, which stays English. Core and operating-system details that arrive as English
//! text (a network error, say) are shown as they come, after our own words.
//!
//! Times are 24-hour in both languages (see `render::clock`).

use tertulia_core::client::{
    DisconnectReason, ErrorKind, FileFailure, FileRequestError, SendError, TransferDirection,
};
use tertulia_core::invite::InviteError;
use tertulia_core::message::LeaveReason;
use tertulia_core::passphrase::{PassphraseError, MAX_PASSPHRASE_BYTES};
use tertulia_core::text::{MessageTextError, NickError, MAX_NICK_CHARS};

use crate::{AddressError, PassphraseSourceError, TargetError, PASSPHRASE_ENV};

/// The language of the terminal client's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// English.
    En,
    /// Español.
    Es,
}

/// The locale variables, in the order POSIX gives them precedence for messages.
pub const LOCALE_VARS: [&str; 3] = ["LC_ALL", "LC_MESSAGES", "LANG"];

impl Lang {
    /// The system's language, from the process environment.
    pub fn from_env() -> Self {
        Self::from_locale(|name| std::env::var(name).ok())
    }

    /// The language of the first of [`LOCALE_VARS`] that is set and not empty, as `var`
    /// reports them.
    pub fn from_locale(var: impl Fn(&str) -> Option<String>) -> Self {
        let locale = LOCALE_VARS
            .iter()
            .find_map(|name| var(name).filter(|v| !v.is_empty()));
        match locale {
            Some(locale) if is_spanish(&locale) => Lang::Es,
            _ => Lang::En,
        }
    }

    fn pick(self, en: impl Into<String>, es: impl Into<String>) -> String {
        match self {
            Lang::En => en.into(),
            Lang::Es => es.into(),
        }
    }

    // ---- start-up and arguments ----

    /// Before an error that ends the program.
    pub fn error_line(self, text: &str) -> String {
        format!("error: {text}")
    }

    pub fn invalid_nick(self, e: NickError) -> String {
        self.pick(
            format!("invalid nickname: {e}"),
            format!("apodo no válido: {}", self.nick_error(e)),
        )
    }

    pub fn passphrase_prompt(self) -> String {
        self.pick("Room passphrase: ", "Contraseña de la sala: ")
    }

    pub fn passphrase_source_error(self, e: &PassphraseSourceError) -> String {
        match (self, e) {
            (Lang::En, e) => e.to_string(),
            (Lang::Es, PassphraseSourceError::File { path, error }) => {
                format!("no se puede leer el archivo de contraseña {path}: {error}")
            }
            (Lang::Es, PassphraseSourceError::Prompt(error)) => {
                format!("no se pudo leer la contraseña desde el terminal: {error}")
            }
            (Lang::Es, PassphraseSourceError::Missing) => format!(
                "no hay contraseña: usa --passphrase-file RUTA, define {PASSPHRASE_ENV} o da un código de invitación (la entrada no es un terminal, así que no se puede preguntar)"
            ),
            (Lang::Es, PassphraseSourceError::Invalid(e)) => self.passphrase_error(e),
        }
    }

    pub fn passphrase_error(self, e: &PassphraseError) -> String {
        match (self, e) {
            (Lang::En, e) => e.to_string(),
            (Lang::Es, PassphraseError::Empty) => "la contraseña está vacía".into(),
            (Lang::Es, PassphraseError::TooLong) => {
                format!("la contraseña tiene más de {MAX_PASSPHRASE_BYTES} bytes")
            }
            (Lang::Es, PassphraseError::Kdf(e)) => format!("falló la derivación de la clave: {e}"),
        }
    }

    /// The server argument is neither an address nor a usable invite code.
    pub fn target_error(self, e: &TargetError) -> String {
        match e {
            TargetError::Address(e) => self.address_error(e),
            TargetError::Invite(e) => self.invite_error(*e),
        }
    }

    pub fn address_error(self, e: &AddressError) -> String {
        match (self, e) {
            (Lang::En, e) => e.to_string(),
            (Lang::Es, AddressError::Empty) => "la dirección del servidor está vacía".into(),
            (Lang::Es, AddressError::UnclosedBracket) => "falta el ']' de la dirección".into(),
            (Lang::Es, AddressError::AfterBracket(after)) => {
                format!("'{after}' sobra tras la dirección IPv6")
            }
            (Lang::Es, AddressError::BadPort(port)) => {
                format!("'{port}' no es un número de puerto (1-65535)")
            }
            (Lang::Es, AddressError::BadHost(host)) => {
                format!("'{host}' no es un nombre de equipo ni una dirección IP válidos")
            }
        }
    }

    pub fn invite_error(self, e: InviteError) -> String {
        match (self, e) {
            (Lang::En, e) => e.to_string(),
            (Lang::Es, InviteError::NotAnInvite) => {
                "no es un código de invitación (empiezan por tertulia://)".into()
            }
            (Lang::Es, InviteError::BadHost) => "el código de invitación está dañado: no tiene una dirección válida antes del puerto (una dirección IPv6 va entre corchetes)".into(),
            (Lang::Es, InviteError::BadPort) => "el código de invitación está dañado: falta el puerto o no es un número del 1 al 65535".into(),
            (Lang::Es, InviteError::DamagedEncoding) => "el código de invitación está dañado: la contraseña tras '#' no está bien codificada (¿se cortó o se copió a mano?)".into(),
            (Lang::Es, InviteError::EmptyPassphrase) => {
                "el código de invitación no trae la contraseña tras '#'".into()
            }
            (Lang::Es, InviteError::BadFingerprint) => "el código de invitación está dañado: la huella del anfitrión tras '/' no tiene 24 dígitos hexadecimales (¿se cortó o se copió a mano?)".into(),
        }
    }

    /// An invite code and `--passphrase-file` both give the passphrase.
    pub fn invite_and_host_identity(self) -> String {
        self.pick(
            "the invite code names another host identity than --host-identity: use one of them",
            "el código de invitación indica otra identidad del anfitrión que --host-identity: usa solo uno",
        )
    }

    pub fn invite_and_passphrase_file(self) -> String {
        self.pick(
            "the invite code already carries the room passphrase: leave out --passphrase-file",
            "el código de invitación ya trae la contraseña de la sala: quita --passphrase-file",
        )
    }

    // ---- interactive mode ----

    pub fn interactive_intro(self) -> String {
        self.pick(
            "type a message and press Enter; /who lists who is online, /older shows earlier messages, /send PATH shares a file, /get ID fetches one, /cancel stops a transfer, /help lists all, /quit leaves",
            "escribe un mensaje y pulsa Intro; /who muestra quién está en línea, /older los mensajes anteriores, /send RUTA comparte un archivo, /get ID descarga uno, /cancel detiene una transferencia, /help los lista todos, /quit sale",
        )
    }

    pub fn help(self) -> String {
        self.pick(
            "/who: who is online · /older: earlier messages · /send PATH: share a file · /get ID: fetch a file · /cancel [ID]: stop a transfer (all without ID) · /quit: leave · anything else is sent to the room",
            "/who: quién está en línea · /older: mensajes anteriores · /send RUTA: compartir un archivo · /get ID: descargar un archivo · /cancel [ID]: detener una transferencia (todas sin ID) · /quit: salir · todo lo demás se envía a la sala",
        )
    }

    /// `names` already sanitized.
    pub fn online(self, names: &[String]) -> String {
        let (n, list) = (names.len(), names.join(", "));
        self.pick(
            format!("online ({n}): {list}"),
            format!("en línea ({n}): {list}"),
        )
    }

    pub fn outbox_full_waiting(self, waiting: usize) -> String {
        self.pick(
            format!(
                "{waiting} messages are waiting for the room; yours goes out when there is room"
            ),
            format!("{waiting} mensajes esperan a la sala; el tuyo saldrá cuando haya sitio"),
        )
    }

    pub fn not_sent(self, e: &SendError) -> String {
        self.pick(
            format!("not sent: {e}"),
            format!("no enviado: {}", self.send_error(e)),
        )
    }

    /// A new nickname typed after a refusal was refused too.
    pub fn nick_retry(self, e: &SendError) -> String {
        self.pick(
            format!("{e}. Type another nickname:"),
            format!("{}. Escribe otro apodo:", self.send_error(e)),
        )
    }

    pub fn send_error(self, e: &SendError) -> String {
        match (self, e) {
            (Lang::En, e) => e.to_string(),
            (Lang::Es, SendError::InvalidText(e)) => self.text_error(*e),
            (Lang::Es, SendError::InvalidNick(e)) => self.nick_error(*e),
            (Lang::Es, SendError::OutboxFull(_)) => format!(
                "ya hay {} mensajes esperando a salir; espera a que vuelva la conexión",
                tertulia_core::client::MAX_OUTBOX
            ),
            (Lang::Es, SendError::AlreadyJoined) => {
                "ya estás en la sala; el apodo solo se puede cambiar antes de entrar".into()
            }
            (Lang::Es, SendError::Stopped) => "el cliente se ha detenido".into(),
            (Lang::Es, SendError::File(e)) => self.file_request_error(e),
        }
    }

    // ---- files ----

    /// Why a `/send` or `/get` was refused at once, in Spanish (English: the error's own words).
    fn file_request_error(self, e: &FileRequestError) -> String {
        match e {
            FileRequestError::Unreadable { path, reason } => {
                format!("no se puede leer {path}: {reason}")
            }
            FileRequestError::NotAFile { path } => format!("{path} no es un archivo normal"),
            FileRequestError::NoName { path } => format!("{path} no tiene nombre de archivo"),
            FileRequestError::UnknownFile { file_id } => {
                format!("no hay ningún archivo {file_id} en esta sala")
            }
            FileRequestError::AlreadyFetching { file_id } => {
                format!("el archivo {file_id} ya se está descargando")
            }
            FileRequestError::TooManyUploads { max } => {
                format!("demasiados envíos en cola (como mucho {max})")
            }
            FileRequestError::TooManyDownloads { max } => {
                format!("demasiadas descargas en cola (como mucho {max})")
            }
            FileRequestError::MemoryFull { max_mib } => {
                format!("demasiados datos esperando a enviarse desde la memoria (como mucho {max_mib} MiB)")
            }
        }
    }

    /// A size for people: bytes, KiB, MiB or GiB with one decimal (a comma in Spanish).
    pub fn size(self, bytes: u64) -> String {
        const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
        if bytes < 1024 {
            return format!("{bytes} B");
        }
        let mut value = bytes as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        let text = format!("{value:.1} {}", UNITS[unit]);
        match self {
            Lang::En => text,
            Lang::Es => text.replace('.', ","),
        }
    }

    /// `/send PATH` was queued. `name` sanitized.
    pub fn file_queued(self, name: &str) -> String {
        self.pick(format!("sending {name}…"), format!("enviando {name}…"))
    }

    /// `/get ID` was queued.
    pub fn fetch_queued(self, id: u64) -> String {
        self.pick(
            format!("fetching file {id}…"),
            format!("descargando el archivo {id}…"),
        )
    }

    /// `/send`, `/get` or `/cancel` without what it needs.
    pub fn file_command_usage(self) -> String {
        self.pick(
            "use /send PATH to share a file, /get ID to fetch one, /cancel [ID] to stop a transfer",
            "usa /send RUTA para compartir un archivo, /get ID para descargar uno, /cancel [ID] para detener una transferencia",
        )
    }

    /// `/cancel` stopped `count` transfers (each also reports its own failure line).
    pub fn cancelled(self, count: usize) -> String {
        match (self, count) {
            (Lang::En, 1) => "stopping 1 transfer".into(),
            (Lang::En, n) => format!("stopping {n} transfers"),
            (Lang::Es, 1) => "deteniendo 1 transferencia".into(),
            (Lang::Es, n) => format!("deteniendo {n} transferencias"),
        }
    }

    /// `/cancel` found nothing to stop (`id`: the one asked for).
    pub fn nothing_to_cancel(self, id: Option<u64>) -> String {
        match (self, id) {
            (Lang::En, None) => "no transfer in progress".into(),
            (Lang::En, Some(id)) => format!("no upload or download {id} in progress"),
            (Lang::Es, None) => "no hay ninguna transferencia en curso".into(),
            (Lang::Es, Some(id)) => format!("no hay ningún envío ni descarga {id} en curso"),
        }
    }

    /// A live file not fetched on its own: over `--auto-fetch-mib` (`budget`: false) or past
    /// the session's automatic budget. `name` sanitized.
    pub fn fetch_skipped(self, name: &str, id: u64, budget: bool) -> String {
        match (self, budget) {
            (Lang::En, false) => format!(
                "{name} is larger than --auto-fetch-mib: not fetched on its own; /get {id} fetches it"
            ),
            (Lang::En, true) => format!(
                "{name}: this session's automatic downloads are used up (--auto-fetch-budget-mib, --auto-fetch-count); /get {id} fetches it"
            ),
            (Lang::Es, false) => format!(
                "{name} es más grande que --auto-fetch-mib: no se descarga solo; /get {id} lo descarga"
            ),
            (Lang::Es, true) => format!(
                "{name}: ya se agotaron las descargas automáticas de esta sesión (--auto-fetch-budget-mib, --auto-fetch-count); /get {id} lo descarga"
            ),
        }
    }

    /// Someone shared a file (`who` painted, `name` sanitized). `earlier`: from the history,
    /// not fetched on its own: `/get ID` fetches it.
    pub fn file_offered(
        self,
        time: &str,
        who: &str,
        name: &str,
        size: u64,
        earlier: Option<u64>,
    ) -> String {
        let size = self.size(size);
        let head = self.pick(
            format!("[{time}] {who} shared {name} ({size})"),
            format!("[{time}] {who} compartió {name} ({size})"),
        );
        match earlier {
            None => head,
            Some(id) => {
                head + &self.pick(
                    format!(" — /get {id} to fetch it"),
                    format!(" — /get {id} para descargarlo"),
                )
            }
        }
    }

    /// A transfer's progress (terse). `name` sanitized.
    pub fn file_progress(
        self,
        direction: TransferDirection,
        name: &str,
        done: u64,
        size: u64,
    ) -> String {
        let percent = (done.saturating_mul(100)).checked_div(size).unwrap_or(100);
        let (total, arrow) = (
            self.size(size),
            match direction {
                TransferDirection::Upload => "↑",
                TransferDirection::Download => "↓",
            },
        );
        self.pick(
            format!("{arrow} {name}: {percent} % of {total}"),
            format!("{arrow} {name}: {percent} % de {total}"),
        )
    }

    /// A file arrived and matched its SHA-256. Both sanitized.
    pub fn file_saved(self, name: &str, path: &str) -> String {
        self.pick(
            format!("{name} received and checked, saved as {path}"),
            format!("{name} recibido y comprobado, guardado como {path}"),
        )
    }

    /// Our file is in the room.
    pub fn file_sent(self, upload_id: u64) -> String {
        self.pick(
            format!("your file (upload {upload_id}) is in the room"),
            format!("tu archivo (envío {upload_id}) ya está en la sala"),
        )
    }

    /// A transfer failed. `name` and `detail` (the core's English words) sanitized.
    pub fn file_failed(
        self,
        direction: TransferDirection,
        name: &str,
        reason: FileFailure,
        detail: &str,
    ) -> String {
        let what = match (self, direction) {
            (Lang::En, TransferDirection::Upload) => format!("{name} was not sent"),
            (Lang::En, TransferDirection::Download) => format!("{name} was not received"),
            (Lang::Es, TransferDirection::Upload) => format!("{name} no se envió"),
            (Lang::Es, TransferDirection::Download) => format!("{name} no se recibió"),
        };
        let why = match (self, reason) {
            (Lang::En, _) => detail.to_string(),
            (Lang::Es, FileFailure::TooLarge) => {
                "es más grande de lo que admite el anfitrión".into()
            }
            (Lang::Es, FileFailure::NoSpace) => "el anfitrión no tiene sitio para él".into(),
            (Lang::Es, FileFailure::Corrupt) => {
                "lo que llegó no coincidía con su SHA-256, tampoco al reintentar".into()
            }
            (Lang::Es, FileFailure::Busy) => {
                "el anfitrión tiene demasiados envíos a medias desde aquí".into()
            }
            (Lang::Es, FileFailure::Disabled) => "el anfitrión no acepta archivos".into(),
            (Lang::Es, FileFailure::Gone) => "el anfitrión ya no lo guarda".into(),
            (Lang::Es, FileFailure::Cancelled) => "cancelado".into(),
            (Lang::Es, FileFailure::Io) => format!("error de archivo local ({detail})"),
            (Lang::Es, FileFailure::LocalSpace) => {
                format!("no queda espacio libre suficiente en este equipo ({detail})")
            }
            (Lang::Es, FileFailure::Refused) => format!("el anfitrión lo rechazó ({detail})"),
        };
        format!("{what}: {why}")
    }

    pub fn nick_error(self, e: NickError) -> String {
        match (self, e) {
            (Lang::En, e) => e.to_string(),
            (Lang::Es, NickError::Empty) => "el apodo está vacío".into(),
            (Lang::Es, NickError::TooLong) => {
                format!("el apodo tiene más de {MAX_NICK_CHARS} caracteres")
            }
            (Lang::Es, NickError::InvisibleCharacters) => {
                "el apodo tiene caracteres de control o invisibles".into()
            }
            (Lang::Es, NickError::BadWhitespace) => {
                "el apodo solo puede tener un espacio entre palabras".into()
            }
            (Lang::Es, NickError::NoLetterOrDigit) => {
                "el apodo necesita al menos una letra o un número".into()
            }
            (Lang::Es, NickError::StackedMarks) => {
                "el apodo acumula demasiados acentos o signos sobre una letra".into()
            }
            (Lang::Es, NickError::MixedScripts) => {
                "una palabra del apodo mezcla alfabetos (por ejemplo letras latinas y cirílicas)"
                    .into()
            }
            (Lang::Es, NickError::Taken) => {
                "ese apodo, u otro que se ve igual, ya está en uso en esta sala; elige otro".into()
            }
            (Lang::Es, NickError::Other) => "la sala no aceptó el apodo; elige otro".into(),
        }
    }

    pub fn text_error(self, e: MessageTextError) -> String {
        match (self, e) {
            (Lang::En, e) => e.to_string(),
            (Lang::Es, MessageTextError::Empty) => "el mensaje está vacío".into(),
            (Lang::Es, MessageTextError::TooLong) => {
                "el mensaje es más largo de lo que permite la sala".into()
            }
            (Lang::Es, MessageTextError::InvisibleCharacters) => {
                "el mensaje tiene caracteres de control o invisibles".into()
            }
            (Lang::Es, MessageTextError::BadId) => "el número del mensaje debe ser 1 o más".into(),
            (Lang::Es, MessageTextError::Other) => "la sala no aceptó el mensaje".into(),
        }
    }

    // ---- events (render.rs); every peer- or server-supplied text arrives sanitized ----

    pub fn connecting(self, addr: &str) -> String {
        self.pick(
            format!("connecting to {addr}…"),
            format!("conectando con {addr}…"),
        )
    }

    pub fn in_room(self, nick: &str, resumed: bool, room_reset: bool, gap: bool) -> String {
        let mut text = self.pick(
            format!("you are in the room as {nick}"),
            format!("estás en la sala como {nick}"),
        );
        if resumed {
            text.push_str(&self.pick(" (reconnected)", " (reconectado)"));
        }
        if room_reset {
            text.push_str(&self.pick(
                "; the server was restarted, earlier history is gone",
                "; el servidor se reinició, el historial anterior ya no está",
            ));
        } else if gap {
            text.push_str(&self.pick(
                "; some older messages you missed are no longer available",
                "; algunos mensajes antiguos que te perdiste ya no están disponibles",
            ));
        }
        text
    }

    /// `message`: the server's own words, shown in English.
    pub fn nick_refused(self, nick: &str, reason: NickError, message: &str) -> String {
        self.pick(
            format!("nickname '{nick}' refused: {message}. Type another nickname:"),
            format!(
                "no se puede usar el apodo «{nick}»: {}. Escribe otro apodo:",
                self.nick_error(reason)
            ),
        )
    }

    pub fn joined(self, time: &str, nick: &str) -> String {
        self.pick(
            format!("[{time}] {nick} joined"),
            format!("[{time}] {nick} se ha unido"),
        )
    }

    pub fn left(self, time: &str, nick: &str, reason: LeaveReason) -> String {
        let verb = match (self, reason) {
            (Lang::En, LeaveReason::Quit) => "left",
            (Lang::En, LeaveReason::ConnectionLost) => "lost connection",
            (Lang::En, LeaveReason::Renamed) => "changed nickname",
            (Lang::En, LeaveReason::Other) => "left",
            (Lang::Es, LeaveReason::Quit) => "se ha ido",
            (Lang::Es, LeaveReason::ConnectionLost) => "perdió la conexión",
            (Lang::Es, LeaveReason::Renamed) => "cambió de apodo",
            (Lang::Es, LeaveReason::Other) => "se ha ido",
        };
        format!("[{time}] {nick} {verb}")
    }

    pub fn older_start(self) -> String {
        self.pick("── earlier in the room ──", "── antes en la sala ──")
    }

    /// The line after a page of older history.
    pub fn older_end(self, more: bool, empty: bool) -> String {
        if more {
            self.pick("── /older shows more ──", "── /older muestra más ──")
        } else if empty {
            self.pick(
                "── nothing earlier is kept ──",
                "── no se guarda nada anterior ──",
            )
        } else {
            self.pick(
                "── start of the kept history ──",
                "── inicio del historial guardado ──",
            )
        }
    }

    /// `message`: the server's own words, shown in English.
    pub fn not_delivered(self, id: u64, reason: MessageTextError, message: &str) -> String {
        self.pick(
            format!("message #{id} was not delivered: {message}"),
            format!(
                "el mensaje n.º {id} no se entregó: {}",
                self.text_error(reason)
            ),
        )
    }

    /// `detail`: the core's English description (sanitized); in English it is the whole line.
    /// `retry_after_secs`: the wait the server asked for (with [`ErrorKind::TooManyFailedAttempts`]).
    pub fn client_error(
        self,
        kind: ErrorKind,
        detail: &str,
        retry_after_secs: Option<u64>,
    ) -> String {
        let lead = match kind {
            ErrorKind::WrongPassphrase => "la contraseña de la sala no es correcta",
            ErrorKind::PassphraseRefused => {
                "el servidor rechazó la contraseña; se comprueba de nuevo (un rechazo solo se cree si se repite)"
            }
            ErrorKind::HandshakeTampered => {
                "la respuesta de la sala no se pudo comprobar (la contraseña ya se aceptó aquí antes): alguien podría estar interfiriendo; reconectando"
            }
            ErrorKind::HostIdentityChanged => {
                "la identidad del anfitrión ha cambiado: si el anfitrión no reinició la sala, alguien podría estar interceptando"
            }
            ErrorKind::NeedsNewer => "esta sala necesita un Tertulia más reciente",
            ErrorKind::HostOutdated => {
                "el anfitrión usa un Tertulia más antiguo; pídele que lo actualice"
            }
            ErrorKind::KnownHosts => {
                "no se pudo leer o escribir el archivo de anfitriones conocidos"
            }
            ErrorKind::RoomChanged => {
                "la sala de esta dirección ha cambiado (otra sal que antes: una sala nueva tras reiniciar, o alguien la altera en la red)"
            }
            ErrorKind::TooManyFailedAttempts => {
                return self.pick(
                    detail,
                    format!(
                        "demasiados intentos fallidos desde tu red; reintenta en {} s",
                        retry_after_secs.unwrap_or_default()
                    ),
                );
            }
            ErrorKind::Integrity => {
                "llegaron datos que no pasaron la comprobación de integridad (alterados o dañados)"
            }
            ErrorKind::IntegrityReportedByServer => {
                "el servidor dice que nuestros datos no pasaron la comprobación de integridad"
            }
            ErrorKind::Network => "no se pudo conectar o se cortó la conexión",
            ErrorKind::Protocol => "el servidor envió algo inesperado",
            ErrorKind::NotTertulia => "esa dirección no responde como una sala de Tertulia",
            ErrorKind::ServerFull => "la sala está llena",
            ErrorKind::ServerShuttingDown => "el anfitrión está cerrando la sala",
            ErrorKind::SlowConsumer => "el servidor nos desconectó por leer demasiado despacio",
            ErrorKind::ServerStorage => {
                "el anfitrión no pudo guardar un mensaje; se enviará de nuevo"
            }
            ErrorKind::BadPassphrase => "esa contraseña no se puede usar",
            ErrorKind::Flood => {
                "envías demasiado rápido: el servidor nos pausó; los mensajes pendientes se enviarán de nuevo"
            }
        };
        self.pick(detail, format!("{lead} ({detail})"))
    }

    /// The host's identity, shown on connecting.
    pub fn host_identity(self, fingerprint: &str) -> String {
        self.pick(
            format!("host identity {fingerprint}"),
            format!("identidad del anfitrión {fingerprint}"),
        )
    }

    /// The host at a pinned address presented another identity (`detail`: the core's
    /// English message, shown as it is in English).
    pub fn host_identity_changed(self, detail: &str, pinned: &str, presented: &str) -> String {
        self.pick(
            detail.to_owned(),
            format!("la identidad del anfitrión ha cambiado: si el anfitrión no reinició la sala, alguien podría estar interceptando (la de confianza hasta ahora era {pinned}, la que presenta es {presented}); no se le ha enviado nada"),
        )
    }

    /// How to accept a changed host identity deliberately.
    pub fn accept_new_host_hint(self, presented: &str) -> String {
        self.pick(
            format!("if you have checked with the host that {presented} is its new identity, run again with --accept-new-host {presented}"),
            format!("si has comprobado con el anfitrión que {presented} es su nueva identidad, vuelve a ejecutar con --accept-new-host {presented}"),
        )
    }

    pub fn reconnecting(self, delay_ms: u64, attempt: u32) -> String {
        let seconds = format!("{:.1}", delay_ms as f64 / 1000.0);
        self.pick(
            format!("reconnecting in {seconds} s (attempt {attempt})…"),
            format!(
                "reconectando en {} s (intento {attempt})…",
                seconds.replace('.', ",")
            ),
        )
    }

    /// `detail`: the core's English description (sanitized).
    pub fn disconnected(self, reason: DisconnectReason, detail: &str) -> String {
        match (self, reason) {
            (Lang::En, _) => format!("disconnected: {detail}"),
            (Lang::Es, DisconnectReason::Quit) => "desconectado: has salido de la sala".into(),
            (Lang::Es, DisconnectReason::WrongPassphrase) => {
                "desconectado: la contraseña de la sala no es correcta".into()
            }
            (Lang::Es, DisconnectReason::GaveUp) => {
                format!("desconectado: se dejó de intentar ({detail})")
            }
            // The error line just before says why, in Spanish; the core's detail is English.
            (Lang::Es, DisconnectReason::Fatal) => "desconectado por el error anterior".into(),
        }
    }
}

impl Lang {
    // ---- finding rooms on the LAN (--discover; the server's --announce) ----

    /// The default name of a room announced by `tertulia-server --announce` on `host`.
    pub fn default_room_name(self, host: &str) -> String {
        self.pick(format!("{host}'s room"), format!("Sala de {host}"))
    }

    pub fn discover_start(self, secs: u64) -> String {
        match secs {
            0 => self.pick(
                "looking for rooms on this network (Ctrl-C stops)…",
                "buscando salas en esta red (Ctrl-C para)…",
            ),
            n => self.pick(
                format!("looking for rooms on this network for {n} s (Ctrl-C stops)…"),
                format!("buscando salas en esta red durante {n} s (Ctrl-C para)…"),
            ),
        }
    }

    /// A room found (`updated`: one already listed whose details changed). Every text
    /// comes cleaned by `core::discovery`. `ours`: the protocol version this program speaks.
    pub fn discover_room(
        self,
        room: &tertulia_core::discovery::FoundRoom,
        updated: bool,
        ours: u8,
    ) -> String {
        let addrs: Vec<String> = room
            .addresses
            .iter()
            .map(|ip| std::net::SocketAddr::new(*ip, room.port).to_string())
            .collect();
        let first = addrs.first().cloned().unwrap_or_default();
        let (name, host, at) = (&room.room_name, &room.host, addrs.join(", "));
        let mut line = match updated {
            false => self.pick(
                format!("+ \"{name}\" on {host} at {at}"),
                format!("+ «{name}» en {host}, en {at}"),
            ),
            true => self.pick(
                format!("~ \"{name}\" on {host} is now at {at}"),
                format!("~ «{name}» en {host} está ahora en {at}"),
            ),
        };
        if !room.fingerprint.is_empty() {
            line.push_str(&self.pick(
                format!(", host identity {}", room.fingerprint),
                format!(", identidad del anfitrión {}", room.fingerprint),
            ));
        }
        if room.version != ours {
            line.push_str(&self.pick(
                format!(" (it speaks protocol {}, this program {ours}: it needs another version of Tertulia)", room.version),
                format!(" (habla el protocolo {}, este programa el {ours}: hace falta otra versión de Tertulia)", room.version),
            ));
        } else {
            // With the announced identity the join is checked like an invite code's.
            let pin = match room.fingerprint.is_empty() {
                true => String::new(),
                false => format!(" --host-identity {}", room.fingerprint),
            };
            line.push_str(&self.pick(
                format!("\n    join: tertulia-chat {first} --nick NAME{pin}"),
                format!("\n    entrar: tertulia-chat {first} --nick NOMBRE{pin}"),
            ));
        }
        line
    }

    /// A listed room withdrawn or expired.
    pub fn discover_lost(self, name: &str) -> String {
        self.pick(
            format!("- \"{name}\" is gone"),
            format!("- «{name}» ya no está"),
        )
    }

    /// At the end of a timed --discover.
    pub fn discover_summary(self, listed: usize) -> String {
        match listed {
            0 => self.pick(
                "no rooms found on this network (join by address: tertulia-chat HOST:PORT --nick NAME)",
                "no se encontró ninguna sala en esta red (entra por dirección: tertulia-chat HOST:PUERTO --nick NOMBRE)",
            ),
            1 => self.pick("1 room on this network", "1 sala en esta red"),
            n => self.pick(
                format!("{n} rooms on this network"),
                format!("{n} salas en esta red"),
            ),
        }
    }

    pub fn discovery_error(self, e: &tertulia_core::discovery::DiscoveryError) -> String {
        use tertulia_core::discovery::DiscoveryError;
        match (self, e) {
            (Lang::En, e) => e.to_string(),
            (Lang::Es, DiscoveryError::NoNetwork) => "no hay ninguna interfaz de red activa aparte de la de bucle local, así que no se pueden buscar ni anunciar salas en la red local; conéctate a una red, o entra por dirección".into(),
            (Lang::Es, DiscoveryError::LoopbackOnly(ip)) => format!("la sala solo escucha en {ip} (este ordenador): nadie de la red local podría entrar, así que no se anuncia; escucha en 0.0.0.0 o en una dirección de la red local"),
            (Lang::Es, DiscoveryError::AddressNotHere(ip)) => format!("ninguna interfaz de red de este ordenador tiene la dirección {ip}, así que la sala no se puede anunciar ahí"),
            (Lang::Es, e) => format!("no se pudo usar mDNS ({e})"),
        }
    }
}

/// `es`, or `es` followed by a territory, codeset or modifier (`es_ES.UTF-8`, `es@euro`, `es-AR`).
fn is_spanish(locale: &str) -> bool {
    let locale = locale.to_ascii_lowercase();
    locale == "es"
        || ["es_", "es.", "es@", "es-"]
            .iter()
            .any(|p| locale.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Lang {
        Lang::from_locale(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    /// A changed host identity reads wholly in Spanish, with both fingerprints; the
    /// disconnection after it does not repeat the core's English message.
    #[test]
    fn a_changed_host_identity_in_spanish() {
        let english = "the host's identity changed — if the host did not reset the room, someone may be intercepting (pinned a, presented b)";
        let es = Lang::Es.host_identity_changed(english, "aaaa", "bbbb");
        assert!(
            es.starts_with("la identidad del anfitrión ha cambiado"),
            "{es}"
        );
        assert!(es.contains("aaaa") && es.contains("bbbb"), "{es}");
        assert!(!es.contains("intercepting"), "{es}");
        assert_eq!(
            Lang::En.host_identity_changed(english, "aaaa", "bbbb"),
            english
        );
        let gone = Lang::Es.disconnected(DisconnectReason::Fatal, english);
        assert!(!gone.contains("intercepting"), "{gone}");
    }

    #[test]
    fn the_system_language_follows_posix_precedence() {
        assert_eq!(from(&[]), Lang::En);
        assert_eq!(from(&[("LANG", "es_ES.UTF-8")]), Lang::Es);
        assert_eq!(from(&[("LANG", "es")]), Lang::Es);
        assert_eq!(from(&[("LANG", "es_AR")]), Lang::Es);
        assert_eq!(from(&[("LANG", "es@euro")]), Lang::Es);
        assert_eq!(from(&[("LANG", "en_US.UTF-8")]), Lang::En);
        assert_eq!(from(&[("LANG", "C")]), Lang::En);
        assert_eq!(from(&[("LANG", "est_EE")]), Lang::En, "not 'es'");
        assert_eq!(
            from(&[("LC_ALL", "en_GB.UTF-8"), ("LANG", "es_ES.UTF-8")]),
            Lang::En,
            "LC_ALL first"
        );
        assert_eq!(
            from(&[("LC_MESSAGES", "es_MX.UTF-8"), ("LANG", "en_US.UTF-8")]),
            Lang::Es,
            "LC_MESSAGES before LANG"
        );
        assert_eq!(
            from(&[("LC_ALL", ""), ("LANG", "es_ES.UTF-8")]),
            Lang::Es,
            "an empty variable is not set"
        );
    }

    #[test]
    fn file_lines_speak_both_languages() {
        assert_eq!(Lang::En.size(512), "512 B");
        assert_eq!(Lang::En.size(1536), "1.5 KiB");
        assert_eq!(Lang::Es.size(100 << 20), "100,0 MiB");
        assert_eq!(
            Lang::Es.file_offered("10:00", "ana", "foto.png", 2048, Some(7)),
            "[10:00] ana compartió foto.png (2,0 KiB) — /get 7 para descargarlo"
        );
        assert_eq!(
            Lang::En.file_progress(TransferDirection::Upload, "a", 50, 200),
            "↑ a: 25 % of 200 B"
        );
        assert_eq!(
            Lang::En.file_progress(TransferDirection::Download, "a", 0, 0),
            "↓ a: 100 % of 0 B"
        );
        let es = Lang::Es.file_failed(
            TransferDirection::Download,
            "a.png",
            FileFailure::Corrupt,
            "did not match",
        );
        assert!(
            es.starts_with("a.png no se recibió: ") && !es.contains("match"),
            "{es}"
        );
        assert!(Lang::Es.help().contains("/send") && Lang::En.help().contains("/get"));
        assert!(Lang::Es.help().contains("/cancel") && Lang::En.help().contains("/cancel"));
        assert_eq!(Lang::Es.cancelled(2), "deteniendo 2 transferencias");
        assert_eq!(
            Lang::En.nothing_to_cancel(Some(7)),
            "no upload or download 7 in progress"
        );
        let skipped = Lang::Es.fetch_skipped("v.mp4", 9, false);
        assert!(
            skipped.contains("/get 9") && skipped.contains("--auto-fetch-mib"),
            "{skipped}"
        );
        assert!(Lang::Es
            .file_failed(
                TransferDirection::Download,
                "a",
                FileFailure::LocalSpace,
                "x"
            )
            .contains("espacio libre"));
    }

    #[test]
    fn spanish_seconds_have_a_decimal_comma() {
        assert_eq!(
            Lang::Es.reconnecting(1500, 2),
            "reconectando en 1,5 s (intento 2)…"
        );
        assert_eq!(
            Lang::En.reconnecting(1500, 2),
            "reconnecting in 1.5 s (attempt 2)…"
        );
    }

    #[test]
    fn too_many_failed_attempts_says_how_long_to_wait_in_both_languages() {
        let en = "too many failed attempts from your network; retry in 42 s";
        let kind = ErrorKind::TooManyFailedAttempts;
        assert_eq!(Lang::En.client_error(kind, en, Some(42)), en);
        assert_eq!(
            Lang::Es.client_error(kind, en, Some(42)),
            "demasiados intentos fallidos desde tu red; reintenta en 42 s"
        );
        assert!(Lang::Es
            .client_error(ErrorKind::RoomChanged, "changed", None)
            .starts_with("la sala de esta dirección ha cambiado"));
    }

    #[test]
    fn english_errors_are_the_core_s_own_words() {
        assert_eq!(
            Lang::En.invite_error(InviteError::BadPort),
            InviteError::BadPort.to_string()
        );
        assert_eq!(
            Lang::En.nick_error(NickError::Taken),
            NickError::Taken.to_string()
        );
        assert_ne!(
            Lang::Es.nick_error(NickError::Taken),
            NickError::Taken.to_string()
        );
    }
}
