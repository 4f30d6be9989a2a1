-- upcall.lua: a Wireshark dissector for the upcall/1 protocol (TCP port 4141).
--
-- Load it for one run:
--     wireshark -X lua_script:pcaps/upcall.lua pcaps/upcall-basic.pcap
--     tshark -r pcaps/upcall-basic.pcap -X lua_script:pcaps/upcall.lua -2 -Y upcall
-- or for good, by copying it to ~/.local/lib/wireshark/plugins/ (Linux and macOS; on Windows
-- %APPDATA%\Wireshark\plugins\). Then try the display filters `upcall`,
-- `upcall.verb == "UPCALL"`, `upcall.callback == "on_event"`, `upcall.client == "client-2"`,
-- `upcall.unanswered`.
--
-- upcall/1 is text, one message per line ending in "\n" (the grammar is at the top of
-- src/protocol.rs). TCP cuts the byte stream where it likes, so one segment may carry several
-- lines and one line may be spread over several segments. This dissector walks the lines of each
-- segment, and when a segment ends in the middle of a line it asks TCP for the next segment
-- (pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT): the line is then shown, whole, in the frame
-- that completed it. It checks each line exactly as the Rust parser does, and names the same error.
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

local upcall = Proto("upcall", "upcall/1 Protocol")

-- The errors, word for word as ProtocolError::as_str() in src/protocol.rs: the server sends them
-- after ERR, so a student sees the same sentence in Wireshark as on the wire. (For an unknown verb
-- the server's ERR adds the verbs it expected: "unknown verb (expected REGISTER, ...)".)
local E = {
    line_too_long = "line too long",
    invalid_utf8 = "line is not valid UTF-8",
    control = "control character in line",
    unknown_verb = "unknown verb",
    missing = "missing field",
    unexpected = "unexpected field",
    bad_callback = "bad callback name (use [a-z][a-z0-9_]*, at most 32 characters)",
    bad_id = "bad upcall id (expected a decimal number)",
    version = "unsupported protocol version",
}

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

function upcall.init()
    upcalls = {}
    answers = {}
    clients = {}
end

---------------------------------------------------------------------------------------------------
-- Checking a line, as src/protocol.rs does.

-- Rust's str::from_utf8: no overlong forms, no surrogates, nothing above U+10FFFF.
local function valid_utf8(s)
    local i, n = 1, #s
    while i <= n do
        local c = s:byte(i)
        local need, lo, hi = 0, 0x80, 0xBF
        if c < 0x80 then
            need = 0
        elseif c >= 0xC2 and c <= 0xDF then
            need = 1
        elseif c == 0xE0 then
            need, lo = 2, 0xA0
        elseif (c >= 0xE1 and c <= 0xEC) or c == 0xEE or c == 0xEF then
            need = 2
        elseif c == 0xED then
            need, hi = 2, 0x9F
        elseif c == 0xF0 then
            need, lo = 3, 0x90
        elseif c >= 0xF1 and c <= 0xF3 then
            need = 3
        elseif c == 0xF4 then
            need, hi = 3, 0x8F
        else
            return false
        end
        for k = 1, need do
            local b = s:byte(i + k)
            if b == nil then
                return false
            end
            if k == 1 then
                if b < lo or b > hi then
                    return false
                end
            elseif b < 0x80 or b > 0xBF then
                return false
            end
        end
        i = i + need + 1
    end
    return true
end

-- char::is_control, TAB excepted: U+0000-U+001F, U+007F-U+009F (C1 is C2 80 .. C2 9F in UTF-8).
local function has_control(s)
    for i = 1, #s do
        local c = s:byte(i)
        if (c < 0x20 and c ~= 0x09) or c == 0x7F then
            return true
        end
        if c == 0xC2 then
            local b = s:byte(i + 1)
            if b and b >= 0x80 and b <= 0x9F then
                return true
            end
        end
    end
    return false
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

-- A callback name as the last field of a line.
local function callback_name(field)
    if field == "" then
        return E.missing
    end
    if field:find(" ", 1, true) then
        return E.unexpected
    end
    return check_callback(field)
end

-- A decimal string to a UInt64 (the id of an upcall has up to 20 digits; Lua's numbers are
-- doubles and would round ids above 2^53).
local U64_MAX = "18446744073709551615"
local function to_uint64(digits)
    local value = UInt64(0)
    for i = 1, #digits do
        value = value * 10 + (digits:byte(i) - 48)
    end
    return value
end

-- "id [SP rest]" starting at position pos of the line: id, its position, rest, its position.
local function upcall_id(fields, pos)
    local space = fields:find(" ", 1, true)
    local id, rest, rest_pos
    if space then
        id, rest, rest_pos = fields:sub(1, space - 1), fields:sub(space + 1), pos + space
    else
        id, rest, rest_pos = fields, "", pos + #fields
    end
    if id == "" then
        return nil, E.missing
    end
    if not id:match("^[0-9]+$") then
        return nil, E.bad_id
    end
    local significant = id:gsub("^0+", "")
    if #significant > #U64_MAX or (#significant == #U64_MAX and significant > U64_MAX) then
        return nil, E.bad_id
    end
    return { id = id, pos = pos, value = to_uint64(id), rest = rest, rest_pos = rest_pos }
end

-- Parses one line (without "\n" and without a "\r" before it). Returns a message:
--   { verb = "UPCALL", verb_len = 6, fields = { {field, value, pos, len}, ... }, id = UInt64 }
-- (pos is 1-based in the line), or nil and the error text.
local function parse(line)
    if has_control(line) then
        return nil, E.control
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
            return nil, E.missing
        end
        local client_id, version = rest:sub(1, sp - 1), rest:sub(sp + 1)
        if client_id == "" then
            return nil, E.missing
        end
        if version ~= VERSION then
            return nil, E.version
        end
        add(f.client_id, client_id, rest_pos)
        add(f.version, version, rest_pos + sp)
    elseif V == "REGISTERED" or V == "REGISTER" then
        local err = callback_name(rest)
        if err then
            return nil, err
        end
        add(f.callback, rest, rest_pos)
    elseif V == "UPCALL" then
        local id, err = upcall_id(rest, rest_pos)
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
        err = callback_name(callback)
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
        local id, err = upcall_id(rest, rest_pos)
        if not id then
            return nil, err
        end
        m.id = id.value
        add(f.id, id.id, id.pos)
        add(V == "RETURN" and f.value or f.reason, id.rest, id.rest_pos)
    elseif V == "BYE" then
        if rest ~= "" then
            return nil, E.unexpected
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
    elseif not valid_utf8(content) then
        err = E.invalid_utf8
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

function upcall.dissector(tvb, pinfo, tree)
    local length = tvb:len()
    if length == 0 then
        return 0
    end
    local stream_field = tcp_stream()
    local stream = stream_field and tostring(stream_field.value) or "?"
    local bytes = tvb:raw(0, length)
    local offset = 0
    local shown = {}
    while offset < length do
        local newline = bytes:find("\n", offset + 1, true)
        if newline == nil then
            if pinfo.can_desegment > 0 then
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
