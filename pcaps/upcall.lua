-- upcall.lua: a Wireshark dissector for the upcall/1 protocol (TCP port 4141).
--
-- Load it for one run:
--     wireshark -X lua_script:pcaps/upcall.lua pcaps/upcall-basic.pcap
--     tshark -r pcaps/upcall-basic.pcap -X lua_script:pcaps/upcall.lua -2 -Y upcall
-- or for good, by copying it to ~/.local/lib/wireshark/plugins/ (Linux and macOS; on Windows
-- %APPDATA%\Wireshark\plugins\). Then try the display filters `upcall`,
-- `upcall.verb == "UPCALL"`, `upcall.callback == "on_event"`, `upcall.client == "client-2"`,
-- `upcall.unanswered`. It runs on Wireshark 4.0 (Lua 5.2) and 4.4 or newer (Lua 5.4); installed
-- and given with -X at once, the installed copy serves. Wireshark 4.2 and newer, run as root
-- (sudo), load no Lua plugin at all: run Wireshark as yourself.
--
-- upcall/1 is text, one message per line ending in "\n" (the grammar is in src/protocol.rs, each
-- rule above the code that checks it; this file has a function of the same name for each check).
-- TCP cuts the byte stream where it likes, so one segment may carry several lines and one line
-- may be spread over several segments. This dissector walks the lines of each
-- segment, and when a segment ends in the middle of a line it asks TCP for the next segment
-- (pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT): the line is then shown, whole, in the frame
-- that completed it. It checks each line exactly as the Rust parser does, and names the same error
-- (tests/tshark.rs checks both on the corpus tests/data/odd-lines.txt). A line over the 4,096-byte
-- limit is not reassembled: as the server does, the dissector skips to its newline, so an endless
-- line costs one pass over its bytes.
--
-- Every line carries upcall.client, the id the server's WELCOME gave the client of that TCP
-- connection (client-1, client-2, ...), and the Info column starts with it: `[client-2] UPCALL 1
-- on_event ...`. So `upcall.client == "client-2"` shows one client's conversation, even when all
-- clients share one address (the lab's two clients are both 172.28.0.20), and Statistics > Flow
-- Graph names each arrow's client.
--
-- Each UPCALL is paired with its RETURN or FAIL (same TCP connection, same upcall id):
-- upcall.response_in on the UPCALL, upcall.request_in and upcall.time (how long the client took)
-- on the answer. An UPCALL that nobody answered is flagged (expert info upcall.unanswered), which
-- needs the whole capture to be read first: Wireshark does that when you look at a packet or open
-- Analyze > Expert Information; tshark only with -2 (two-pass analysis).
--
-- Wireshark's TCP preferences matter: "Allow subdissector to reassemble TCP streams" must be on
-- (it is by default), and for a capture with retransmissions or segments out of order, turn on
-- "Reassemble out-of-order segments" (off by default in Wireshark 4.0), or
-- `-o tcp.reassemble_out_of_order:TRUE` for tshark: then Wireshark joins the lines as
-- `cargo run --example decode` does.
--
-- The port is a preference (Edit > Preferences > Protocols > UPCALL, or `-o upcall.port:4242`);
-- "Decode As..." works too.

local MAX_LINE = 4096          -- longest line accepted, newline included (DEFAULT_MAX_LINE)
local MAX_CALLBACK_NAME = 32
local VERSION = "upcall/1"
local DEFAULT_PORT = 4141

-- Loaded twice (a copy in the plugins folder and -X lua_script: as well): the first copy serves,
-- the second steps aside instead of failing with "there cannot be two protocols with the same
-- description". Lua 5.2 (Wireshark 4.0) and 5.4 (4.4 and later) alike run every plugin in one
-- shared global table, so a global marks the first.
if upcall_dissector_loaded then
    return
end
local created, upcall = pcall(Proto, "upcall", "upcall/1 Protocol")
if not created then
    -- An older copy without this guard got there first: leave it be.
    return
end
upcall_dissector_loaded = true

-- The errors, word for word as ProtocolError's Display in src/protocol/error.rs: the server sends them
-- after ERR, so a student sees the same sentence in Wireshark as on the wire. (For an unknown verb
-- the server's ERR adds the verbs it expected: "unknown verb (expected REGISTER, ...)".)
local E = {
    line_too_long = "line too long",
    invalid_utf8 = "line is not valid UTF-8",
    unknown_verb = "unknown verb",
    bad_callback = "bad callback name (use [a-z][a-z0-9_]*, at most 32 characters)",
    version = "unsupported protocol version",
}
function E.missing(verb, field)
    return "missing field: " .. verb .. " needs " .. field
end
function E.empty(after)
    return "empty field: two spaces after " .. after .. " (fields are separated by one space)"
end
function E.unexpected(verb, takes)
    return "unexpected field: " .. verb .. " takes " .. takes
end
function E.bad_id(why)
    return "bad upcall id: " .. why
end

-- ProtoField.framenum takes a frame type (the little arrows in the packet list) since
-- Wireshark 3.6; older ones take the field without it.
local function framenum(abbr, name, kind, desc)
    local ok, field = pcall(ProtoField.framenum, abbr, name, base.NONE, kind, desc)
    if ok then
        return field
    end
    return ProtoField.framenum(abbr, name, base.NONE)
end

local f = {
    verb = ProtoField.string("upcall.verb", "Verb"),
    client_id = ProtoField.string("upcall.client_id", "Client id"),
    client = ProtoField.string("upcall.client", "Client",
        "The id the server gave this connection's client in its WELCOME"),
    version = ProtoField.string("upcall.version", "Protocol version"),
    id = ProtoField.uint64("upcall.id", "Upcall id", base.DEC),
    callback = ProtoField.string("upcall.callback", "Callback"),
    argument = ProtoField.string("upcall.argument", "Argument"),
    value = ProtoField.string("upcall.value", "Value"),
    reason = ProtoField.string("upcall.reason", "Reason"),
    text = ProtoField.string("upcall.text", "Text"),
    line = ProtoField.string("upcall.line", "Line"),
    error = ProtoField.string("upcall.error", "Error"),
    response_in = framenum("upcall.response_in", "Response in",
        frametype and frametype.RESPONSE, "The frame of the RETURN or FAIL that answers this UPCALL"),
    request_in = framenum("upcall.request_in", "Request in",
        frametype and frametype.REQUEST, "The frame of the UPCALL this RETURN or FAIL answers"),
    time = ProtoField.relative_time("upcall.time", "Time the client took",
        "From the UPCALL to its RETURN or FAIL"),
}
upcall.fields = {
    f.verb, f.client_id, f.client, f.version, f.id, f.callback, f.argument, f.value, f.reason, f.text,
    f.line, f.error, f.response_in, f.request_in, f.time,
}

local x = {
    unanswered = ProtoExpert.new("upcall.unanswered", "UPCALL never answered",
        expert.group.SEQUENCE, expert.severity.WARN),
    unmatched = ProtoExpert.new("upcall.unmatched", "Answer to no waiting UPCALL",
        expert.group.SEQUENCE, expert.severity.NOTE),
    bad_line = ProtoExpert.new("upcall.bad_line", "Not a valid upcall/1 line",
        expert.group.MALFORMED, expert.severity.ERROR),
    partial = ProtoExpert.new("upcall.partial", "Line without its newline",
        expert.group.REASSEMBLE, expert.severity.NOTE),
}
upcall.experts = { x.unanswered, x.unmatched, x.bad_line, x.partial }

upcall.prefs.port = Pref.uint("TCP port", DEFAULT_PORT, "The TCP port of the upcall/1 server")

local tcp_stream = Field.new("tcp.stream")

-- UPCALLs and their answers, by "tcp stream:upcall id". Filled on the first pass over the capture
-- (pinfo.visited false), read on every later one.
local upcalls = {}   -- key -> { frame = n, time = seconds since the capture's start }
local answers = {}   -- key -> { frame = n, time = ... }
-- The client of each connection, by tcp stream: the id in the first WELCOME the server sent on it.
local clients = {}

-- Lines over the limit (see long_line_ends below): on the first pass, by direction of a connection,
-- the bytes so far of the long line being skipped; for every pass, by frame, direction and buffer
-- length, the bytes of a long line before that buffer.
local skipping = {}
local carried = {}

function upcall.init()
    upcalls = {}
    answers = {}
    clients = {}
    skipping = {}
    carried = {}
end

---------------------------------------------------------------------------------------------------
-- Checking a line, as src/protocol.rs does.

-- Rust's str::from_utf8 (no overlong forms, no surrogates, nothing above U+10FFFF), decoding as it
-- goes: the code points of s and the byte (from 1) where each starts, or nil if s is not UTF-8.
local function decode_utf8(s)
    local cps, at = {}, {}
    local i, n = 1, #s
    while i <= n do
        local c = s:byte(i)
        local need, lo, hi, cp = 0, 0x80, 0xBF, c
        if c < 0x80 then
            need = 0
        elseif c >= 0xC2 and c <= 0xDF then
            need, cp = 1, c - 0xC0
        elseif c == 0xE0 then
            need, lo, cp = 2, 0xA0, 0
        elseif (c >= 0xE1 and c <= 0xEC) or c == 0xEE or c == 0xEF then
            need, cp = 2, c - 0xE0
        elseif c == 0xED then
            need, hi, cp = 2, 0x9F, 0x0D
        elseif c == 0xF0 then
            need, lo, cp = 3, 0x90, 0
        elseif c >= 0xF1 and c <= 0xF3 then
            need, cp = 3, c - 0xF0
        elseif c == 0xF4 then
            need, hi, cp = 3, 0x8F, 4
        else
            return nil
        end
        for k = 1, need do
            local b = s:byte(i + k)
            if b == nil then
                return nil
            end
            if k == 1 then
                if b < lo or b > hi then
                    return nil
                end
            elseif b < 0x80 or b > 0xBF then
                return nil
            end
            cp = cp * 64 + (b - 0x80)
        end
        cps[#cps + 1] = cp
        at[#at + 1] = i
        i = i + need + 1
    end
    return cps, at
end

-- The text rule of check_text() in src/protocol/text.rs, with the same lists and names.
local ZWJ, VS16, BLACK_FLAG, CANCEL_TAG = 0x200D, 0xFE0F, 0x1F3F4, 0xE007F

local function in_ranges(cp, ranges)
    for k = 1, #ranges, 2 do
        if cp >= ranges[k] and cp <= ranges[k + 1] then
            return true
        end
    end
    return false
end

-- Refused wherever they stand (is_invisible_format).
local FORMAT = {
    0x00AD, 0x00AD, 0x061C, 0x061C, 0x180E, 0x180E, 0x200B, 0x200F, 0x2028, 0x202E,
    0x2060, 0x2064, 0x2066, 0x206F, 0xFEFF, 0xFEFF, 0xFFF9, 0xFFFB, 0x1D173, 0x1D17A,
    0xE0000, 0xE001F,
}
local EMOJI = { 0x2600, 0x27BF, 0x2B00, 0x2BFF, 0x1F000, 0x1FAFF }
local SELECTORS = { 0xFE00, 0xFE0F, 0xE0100, 0xE01EF }

local function is_emoji(cp)
    return cp ~= nil and in_ranges(cp, EMOJI)
end
local function is_tag(cp)
    return cp ~= nil and cp >= 0xE0020 and cp <= 0xE007E
end
local function is_control(cp)
    return cp < 0x20 or (cp >= 0x7F and cp <= 0x9F)
end
-- char::is_whitespace, for the code points a visible character is not.
local WHITESPACE = { 0x09, 0x0D, 0x20, 0x20, 0x85, 0x85, 0xA0, 0xA0, 0x1680, 0x1680,
    0x2000, 0x200A, 0x2028, 0x2029, 0x202F, 0x202F, 0x205F, 0x205F, 0x3000, 0x3000 }
local function is_visible(cp)
    return cp ~= nil and not in_ranges(cp, WHITESPACE) and cp ~= ZWJ
        and not (cp >= 0xFE00 and cp <= 0xFE0F) and not (cp >= 0xE0000 and cp <= 0xE01EF)
end

local NAMES = {
    [0x00] = "NUL", [0x07] = "bell", [0x08] = "backspace", [0x0A] = "line feed",
    [0x0B] = "vertical tab", [0x0C] = "form feed", [0x0D] = "carriage return",
    [0x1B] = "escape", [0x7F] = "delete", [0x00AD] = "soft hyphen",
    [0x061C] = "Arabic letter mark", [0x180E] = "Mongolian vowel separator",
    [0x200B] = "zero width space", [0x200C] = "zero width non-joiner",
    [0x200D] = "zero width joiner", [0x200E] = "left-to-right mark",
    [0x200F] = "right-to-left mark", [0x2028] = "line separator",
    [0x2029] = "paragraph separator", [0x202A] = "left-to-right embedding",
    [0x202B] = "right-to-left embedding", [0x202C] = "pop directional formatting",
    [0x202D] = "left-to-right override", [0x202E] = "right-to-left override",
    [0x2060] = "word joiner", [0x2066] = "left-to-right isolate",
    [0x2067] = "right-to-left isolate", [0x2068] = "first strong isolate",
    [0x2069] = "pop directional isolate", [0xFEFF] = "zero width no-break space",
}
local function named(cp)
    local name = NAMES[cp]
    if name == nil and in_ranges(cp, SELECTORS) then
        name = "variation selector"
    elseif name == nil and cp >= 0xE0000 and cp <= 0xE007F then
        name = "tag"
    end
    local code = string.format("U+%04X", cp)
    if name then
        return code .. " (" .. name .. ")"
    end
    return code
end

local function why_refused(cp)
    if cp == ZWJ then
        return "a zero width joiner is allowed only between two emoji"
    elseif in_ranges(cp, SELECTORS) then
        return "a variation selector is allowed only right after a visible character"
    elseif cp >= 0xE0020 and cp <= 0xE007F then
        return "tag characters are allowed only in a flag: U+1F3F4, tags, U+E007F"
    end
    return "it reorders or hides text"
end

-- nil if the decoded line is text, else the error.
local function check_text(cps, at)
    for k = 1, #cps do
        local cp, previous, next = cps[k], cps[k - 1], cps[k + 1]
        if is_control(cp) and cp ~= 0x09 then
            return "control character " .. named(cp) .. " at byte " .. at[k]
        end
        local allowed
        if cp == ZWJ then
            allowed = (is_emoji(previous) or previous == VS16) and is_emoji(next)
        elseif in_ranges(cp, SELECTORS) then
            allowed = is_visible(previous)
        elseif is_tag(cp) then
            allowed = (previous == BLACK_FLAG or is_tag(previous))
                and (is_tag(next) or next == CANCEL_TAG)
        elseif cp == CANCEL_TAG then
            allowed = is_tag(previous)
        else
            allowed = not in_ranges(cp, FORMAT)
        end
        if not allowed then
            return "invisible format character " .. named(cp) .. " at byte " .. at[k]
                .. " (" .. why_refused(cp) .. ")"
        end
    end
    return nil
end

-- to_ascii_uppercase: a-z only, whatever the locale.
local function ascii_upper(s)
    return (s:gsub("[a-z]", function(c) return string.char(c:byte() - 32) end))
end

local function check_callback(name)
    if #name > MAX_CALLBACK_NAME or not name:match("^[a-z][a-z0-9_]*$") then
        return E.bad_callback
    end
    return nil
end

-- A callback name as the last field of a `verb` line (callback_name()).
local function callback_name(verb, field)
    if field == "" then
        return E.missing(verb, "a callback name")
    end
    if field:sub(1, 1) == " " then
        return E.empty(verb)
    end
    if field:find(" ", 1, true) then
        return E.unexpected(verb, "one callback name, without spaces")
    end
    return check_callback(field)
end

-- A decimal string to a UInt64 (the id of an upcall has up to 20 digits; Lua's numbers are
-- doubles in 5.2 and would round ids above 2^53).
local U64_MAX = "18446744073709551615"
local function to_uint64(digits)
    local value = UInt64(0)
    for i = 1, #digits do
        value = value * 10 + (digits:byte(i) - 48)
    end
    return value
end

-- "id [SP rest]" after `verb`, starting at position pos of the line (upcall_id()): the id, its
-- position, rest, its position; or nil and the error.
local function upcall_id(verb, fields, pos)
    local space = fields:find(" ", 1, true)
    local id, rest, rest_pos
    if space then
        id, rest, rest_pos = fields:sub(1, space - 1), fields:sub(space + 1), pos + space
    else
        id, rest, rest_pos = fields, "", pos + #fields
    end
    if id == "" then
        if fields == "" then
            return nil, E.missing(verb, "an upcall id")
        end
        return nil, E.empty(verb)
    end
    if not id:match("^[0-9]+$") then
        return nil, E.bad_id("expected a decimal number")
    end
    -- At most 20 digits, leading zeros included, as the server counts them.
    if #id > #U64_MAX then
        return nil, E.bad_id("more than 20 digits")
    end
    if #id == #U64_MAX and id > U64_MAX then
        return nil, E.bad_id("larger than " .. U64_MAX)
    end
    return { id = id, pos = pos, value = to_uint64(id), rest = rest, rest_pos = rest_pos }
end

-- Parses one line (without "\n" and without a "\r" before it), as parse() does. Returns a message:
--   { verb = "UPCALL", verb_len = 6, fields = { {field, value, pos, len}, ... }, id = UInt64 }
-- (pos is 1-based in the line), or nil and the error text.
local function parse(line)
    local cps, at = decode_utf8(line)
    if cps == nil then
        return nil, E.invalid_utf8
    end
    local refused = check_text(cps, at)
    if refused then
        return nil, refused
    end
    local space = line:find(" ", 1, true)
    local verb, rest, rest_pos
    if space then
        verb, rest, rest_pos = line:sub(1, space - 1), line:sub(space + 1), space + 1
    else
        verb, rest, rest_pos = line, "", #line + 1
    end
    local m = { verb = ascii_upper(verb), verb_len = #verb, fields = {} }
    local function add(field, value, pos)
        m.fields[#m.fields + 1] = { field, value, pos, #value }
    end
    local V = m.verb
    if V == "WELCOME" then
        local sp = rest:find(" ", 1, true)
        if not sp then
            return nil, E.missing("WELCOME", "a client id and the protocol version")
        end
        local client_id, version = rest:sub(1, sp - 1), rest:sub(sp + 1)
        if client_id == "" then
            return nil, E.empty("WELCOME")
        end
        if version ~= VERSION then
            return nil, E.version
        end
        add(f.client_id, client_id, rest_pos)
        add(f.version, version, rest_pos + sp)
    elseif V == "REGISTERED" or V == "REGISTER" then
        local err = callback_name(V, rest)
        if err then
            return nil, err
        end
        add(f.callback, rest, rest_pos)
    elseif V == "UPCALL" then
        local id, err = upcall_id(V, rest, rest_pos)
        if not id then
            return nil, err
        end
        local after, after_pos = id.rest, id.rest_pos
        local sp = after:find(" ", 1, true)
        local callback, argument, argument_pos
        if sp then
            callback, argument, argument_pos = after:sub(1, sp - 1), after:sub(sp + 1), after_pos + sp
        else
            callback, argument, argument_pos = after, "", after_pos + #after
        end
        if callback == "" then
            if after == "" then
                return nil, E.missing("UPCALL", "a callback name after the id")
            end
            return nil, E.empty("the upcall id")
        end
        err = check_callback(callback)
        if err then
            return nil, err
        end
        m.id = id.value
        add(f.id, id.id, id.pos)
        add(f.callback, callback, after_pos)
        add(f.argument, argument, argument_pos)
    elseif V == "ERR" then
        add(f.reason, rest, rest_pos)
    elseif V == "MSG" then
        add(f.text, rest, rest_pos)
    elseif V == "RETURN" or V == "FAIL" then
        local id, err = upcall_id(V, rest, rest_pos)
        if not id then
            return nil, err
        end
        m.id = id.value
        add(f.id, id.id, id.pos)
        add(V == "RETURN" and f.value or f.reason, id.rest, id.rest_pos)
    elseif V == "BYE" then
        if rest ~= "" then
            return nil, E.unexpected("BYE", "no field")
        end
    else
        return nil, E.unknown_verb
    end
    return m
end

---------------------------------------------------------------------------------------------------
-- The tree, the Info column, the pairing.

local function quoted(text)
    return '"' .. text .. '"'
end

-- What the Info column and the protocol item show for one message.
local function summary(m)
    local parts = { m.verb }
    for _, field in ipairs(m.fields) do
        local kind, value = field[1], field[2]
        if kind == f.argument or kind == f.value or kind == f.reason or kind == f.text then
            if value ~= "" then
                parts[#parts + 1] = quoted(value)
            end
        else
            parts[#parts + 1] = value
        end
    end
    return table.concat(parts, " ")
end

local function seconds(t)
    local s = math.floor(t)
    local ns = math.floor((t - s) * 1e9 + 0.5)
    if ns >= 1000000000 then
        s, ns = s + 1, ns - 1000000000
    end
    return NSTime.new(s, ns)
end

-- UPCALL <-> RETURN/FAIL.
local function pair(m, pinfo, item, stream)
    local key = stream .. ":" .. tostring(m.id)
    local frame = pinfo.number
    if m.verb == "UPCALL" then
        if not pinfo.visited and upcalls[key] == nil then
            upcalls[key] = { frame = frame, time = pinfo.rel_ts }
        end
        local request = upcalls[key]
        if request and request.frame == frame then
            local answer = answers[key]
            if answer then
                item:add(f.response_in, answer.frame):set_generated()
            elseif pinfo.visited then
                item:add_proto_expert_info(x.unanswered, "UPCALL " .. tostring(m.id)
                    .. " was never answered: no RETURN or FAIL " .. tostring(m.id)
                    .. " follows on this connection")
            end
        end
    else
        local request = upcalls[key]
        if not pinfo.visited and request and request.frame < frame and answers[key] == nil then
            answers[key] = { frame = frame, time = pinfo.rel_ts }
        end
        local answer = answers[key]
        if request and answer and answer.frame == frame then
            item:add(f.request_in, request.frame):set_generated()
            item:add(f.time, seconds(answer.time - request.time)):set_generated()
        else
            item:add_proto_expert_info(x.unmatched, m.verb .. " " .. tostring(m.id)
                .. " answers no UPCALL waiting on this connection (never sent, or already answered)")
        end
    end
end

-- One line of `len` bytes at `start` (without its "\n"); `complete` is false for bytes that no
-- newline followed (only when TCP reassembly is off). Returns its summary, or nil for an empty line.
local function dissect_line(tvb, pinfo, tree, start, len, complete, stream)
    local raw = tvb:raw(start, len)
    local too_long = len >= MAX_LINE
    local content = raw
    if content:sub(-1) == "\r" then
        content = content:sub(1, -2)
    end
    if content == "" and not too_long then
        return nil
    end
    local item = tree:add(upcall, tvb(start, complete and len + 1 or len))
    item:add(f.line, tvb(start, #content), content)
    if not complete then
        item:add_proto_expert_info(x.partial)
    end
    local m, err
    if too_long then
        err = E.line_too_long
    else
        m, err = parse(content)
    end
    -- The server is the side on the port this dissector was called for (preference or Decode As).
    if m and m.verb == "WELCOME" and clients[stream] == nil and pinfo.src_port == pinfo.match_uint then
        clients[stream] = m.fields[1][2]
    end
    if clients[stream] then
        item:add(f.client, clients[stream]):set_generated()
    end
    if not m then
        item:add(f.error, tvb(start, #content), err)
        item:add_proto_expert_info(x.bad_line, err)
        local text = "[bad line: " .. err .. "]"
        item:append_text(", " .. text)
        return text
    end
    item:add(f.verb, tvb(start, m.verb_len), m.verb)
    for _, field in ipairs(m.fields) do
        local kind, value, pos, flen = field[1], field[2], field[3], field[4]
        -- An empty last field sits right after the line; without a newline (reassembly off)
        -- that is past the end of the buffer, so it points at the line's last byte instead.
        local at = math.min(start + pos - 1, tvb:len() - 1)
        local range = tvb(at, flen)
        if kind == f.id then
            item:add(kind, range, m.id)
        else
            item:add(kind, range, value)
        end
    end
    if m.id and (m.verb == "UPCALL" or m.verb == "RETURN" or m.verb == "FAIL") then
        pair(m, pinfo, item, stream)
    end
    local text = summary(m)
    if not complete then
        text = text .. " [no newline yet: turn TCP reassembly on]"
    end
    item:append_text(", " .. text)
    return text
end

-- A line longer than MAX_LINE: the server keeps none of it and skips to its newline; so does this
-- dissector. It stops asking TCP for more once MAX_LINE bytes came without a newline, and reads
-- the segments that follow one at a time, looking only for the newline. So a 100 MB line without
-- a newline costs one pass over its bytes, not a reassembly that grows (and is searched again)
-- with every segment. The line's error is shown in the frame of its newline, as the decoder does.

-- The frame that ends a line over the limit: `len` bytes of it here, `total` in all.
local function long_line_ends(tvb, pinfo, tree, len, total, stream)
    local item = tree:add(upcall, tvb(0, len + 1))
    if clients[stream] then
        item:add(f.client, clients[stream]):set_generated()
    end
    item:add(f.error, tvb(0, len), E.line_too_long)
    item:add_proto_expert_info(x.bad_line, E.line_too_long)
    local text = "[bad line: " .. E.line_too_long .. "] (" .. total .. " bytes)"
    item:append_text(", " .. text)
    return text
end

-- Bytes in the middle of a line over the limit: `total` bytes of it so far.
local function long_line_goes_on(tvb, tree, from, total)
    local item = tree:add(upcall, tvb(from, tvb:len() - from))
    local text = "[a line over the " .. MAX_LINE .. "-byte limit: " .. total
        .. " bytes so far, skipped up to its newline]"
    item:append_text(", " .. text)
    return text
end

function upcall.dissector(tvb, pinfo, tree)
    local length = tvb:len()
    if length == 0 then
        return 0
    end
    local stream_field = tcp_stream()
    local stream = stream_field and tostring(stream_field.value) or "?"
    local direction = stream .. (pinfo.src_port == pinfo.match_uint and ">client" or ">server")
    local key = pinfo.number .. " " .. direction .. " " .. length
    local bytes = tvb:raw(0, length)
    local offset = 0
    local shown = {}
    -- Does this buffer start inside a line over the limit? Known on the first pass from the
    -- buffers before it; remembered for every later pass (Wireshark dissects a frame again
    -- whenever it is shown).
    local before
    if not pinfo.visited then
        before = skipping[direction]
        skipping[direction] = nil
        carried[key] = before
    else
        before = carried[key]
    end
    if before then
        local newline = bytes:find("\n", 1, true)
        if newline == nil then
            -- The hot path of an endless line, once per segment: as little as possible.
            if not pinfo.visited then
                skipping[direction] = before + length
            end
            local text = long_line_goes_on(tvb, tree, 0, before + length)
            pinfo.cols.protocol = "upcall/1"
            pinfo.cols.info = text
            return length
        else
            shown[1] = long_line_ends(tvb, pinfo, tree, newline - 1, before + newline - 1, stream)
            offset = newline
        end
    end
    while offset < length do
        local newline = bytes:find("\n", offset + 1, true)
        if newline == nil then
            if length - offset >= MAX_LINE then
                -- Over the limit already: skip to its newline in the segments that follow.
                if not pinfo.visited then
                    skipping[direction] = length - offset
                end
                shown[#shown + 1] = long_line_goes_on(tvb, tree, offset, length - offset)
            elseif pinfo.can_desegment > 0 then
                -- Half a line: have TCP bring the next segment and call again from its start.
                -- Return the whole length all the same: returning 0 would tell TCP this is not
                -- upcall/1 at all, and its reassembly would trip over the request.
                pinfo.desegment_offset = offset
                pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
            else
                local text = dissect_line(tvb, pinfo, tree, offset, length - offset, false, stream)
                shown[#shown + 1] = text
            end
            break
        end
        local text = dissect_line(tvb, pinfo, tree, offset, newline - 1 - offset, true, stream)
        if text then
            shown[#shown + 1] = text
        end
        offset = newline
    end
    if #shown > 0 then
        pinfo.cols.protocol = "upcall/1"
        -- TCP may call this twice for one frame (the end of a reassembled line, then the lines
        -- that follow in the same segment): add to what the first call wrote.
        local info = table.concat(shown, ", ")
        local before = tostring(pinfo.cols.info)
        if pinfo.private.upcall_info == tostring(pinfo.number) and before ~= "" then
            pinfo.cols.info:append(", " .. info)
        elseif clients[stream] then
            pinfo.cols.info:set("[" .. clients[stream] .. "] " .. info)
        else
            pinfo.cols.info:set(info)
        end
        pinfo.private.upcall_info = tostring(pinfo.number)
    end
    return length
end

local registered_port = 0
local function use_port(port)
    local tcp_port = DissectorTable.get("tcp.port")
    if registered_port ~= 0 then
        tcp_port:remove(registered_port, upcall)
    end
    if port ~= 0 then
        tcp_port:add(port, upcall)
    end
    registered_port = port
end

function upcall.prefs_changed()
    if upcall.prefs.port ~= registered_port then
        use_port(upcall.prefs.port)
    end
end

use_port(DEFAULT_PORT)
