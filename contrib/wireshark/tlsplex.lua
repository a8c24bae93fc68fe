-- Wireshark / tshark dissector for tlsplex links.
--
-- A tlsplex link starts with one negotiation message in each direction
-- (OFFER from the dialling gateway, DECISION or REFUSE from the relay),
-- in plaintext; then TLS records (outcome TLS) or mux frames (outcome
-- PLAINTEXT) follow in each direction.  This dissector decodes the
-- negotiation messages, hands the rest of each direction to Wireshark's
-- TLS dissector, and decodes mux frames on plaintext links.  The byte
-- layout is in docs/PROTOCOL.md; the code tables mirror proto/neg.h,
-- proto/neg.c and proto/frame.h, and test/test_wire.c checks that they
-- list exactly the codes and words of the C code.
--
-- Load it with  tshark -X lua_script:tlsplex.lua  or copy it into
-- ~/.local/lib/wireshark/plugins/.  See contrib/wireshark/README.md.

local tlsplex = Proto("tlsplex", "tlsplex link")

local DEFAULT_PORT = 7400 -- the relay's default listen port (config/config.c)
local MAGIC = "\137TPX\r\n\026\n"
local HDR_LEN = 14
local MAX_LEN = 4096
local FRAME_HDR_LEN = 9

local msg_types = { [1] = "OFFER", [2] = "DECISION", [3] = "REFUSE" }
local tls_modes = { [0] = "off", [1] = "allow", [2] = "prefer", [3] = "require" }
local cert_wants = { [0] = "none", [1] = "optional", [2] = "require" }
local results = { [0] = "PLAINTEXT", [1] = "TLS", [2] = "REFUSE" }
local tls_versions = { [0] = "none", [0x0303] = "TLSv1.2", [0x0304] = "TLSv1.3" }

-- enum neg_reason in proto/neg.h, by code: the enum name without NEG_R_.
local reasons = {
	[0] = "NONE",
	[1] = "TLS_AGREED",
	[2] = "NEITHER_ASKED",
	[3] = "DIALER_OFF",
	[4] = "ACCEPTOR_OFF",
	[100] = "REQUIRED_BY_DIALER",
	[101] = "REQUIRED_BY_ACCEPTOR",
	[102] = "NO_COMMON_VERSION",
	[103] = "NO_COMMON_CIPHER",
	[104] = "NO_COMMON_PROTOCOL",
	[105] = "MALFORMED",
	[106] = "UNKNOWN_PEER",
	[107] = "BUSY",
	[108] = "DECISION_MISMATCH",
	[109] = "POLICY_VIOLATION",
	[110] = "CERT_REQUIRED",
}

-- neg_reason_str() in proto/neg.c, by code: what the reason means and
-- what to do about it.
local reason_texts = {
	[0] = "no reason given",
	[1] = "TLS agreed: one side prefers or requires TLS and neither side has it off",
	[2] = "plaintext: neither side prefers or requires TLS (set prefer or require on one side to use TLS)",
	[3] = "plaintext: the dialling side has TLS off",
	[4] = "plaintext: the accepting side has TLS off",
	[100] = "the dialling side requires TLS but the accepting side has TLS off",
	[101] = "the accepting side requires TLS but the dialling side has TLS off",
	[102] = "the two sides' TLS version ranges do not overlap; widen the minimum or maximum TLS version on one side",
	[103] = "no cipher suite is enabled on both sides for the agreed TLS versions; add a common suite to one side's cipher list",
	[104] = "the two sides speak no common negotiation protocol version; upgrade the older side",
	[105] = "the negotiation message could not be decoded; check that the peer is a tlsplex daemon of a compatible version",
	[106] = "the node name matches no [peer] section or enabled template on the accepting side; add one or fix the node name",
	[107] = "the accepting side reached a limit; retry later or raise the limit",
	[108] = "the decision does not follow from the two offers (tampering in transit, or incompatible versions)",
	[109] = "the decision breaks this side's TLS policy (this side requires TLS)",
	[110] = "the accepting side requires a client certificate of this peer (tls = verify, or its partner section) and the dialling side has none to offer; configure cert and key on the dialling side",
}

-- enum neg_field in proto/neg.h.
local field_names = {
	[1] = "NODE", [2] = "TLS_MODE", [3] = "TLS_VERSIONS", [4] = "CIPHERS",
	[5] = "CERT", [6] = "MUX", [7] = "KEEPALIVE", [8] = "NONCE",
	[9] = "OUTCOME", [10] = "COMMON_CIPHERS", [11] = "TEXT", [12] = "FLOW",
}

-- The suites tlsplex knows (proto/policy.c); others show as numbers.
local cipher_names = {
	[0x1301] = "TLS_AES_128_GCM_SHA256",
	[0x1302] = "TLS_AES_256_GCM_SHA384",
	[0x1303] = "TLS_CHACHA20_POLY1305_SHA256",
	[0xC02B] = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	[0xC02F] = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	[0xC02C] = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	[0xC030] = "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	[0xCCA9] = "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	[0xCCA8] = "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}

-- enum frame_type and enum mux_code in proto/frame.h.
local frame_types = {
	[0] = "DATA", [1] = "OPEN", [2] = "RESET", [3] = "WINDOW", [4] = "PING",
	[5] = "GOAWAY", [6] = "BIND", [7] = "LINK_ACK",
}
local mux_codes = {
	[0] = "NO_ERROR", [1] = "REFUSED", [2] = "CONNECT_FAILED",
	[3] = "CONN_RESET", [4] = "FLOW_CONTROL", [5] = "PROTOCOL", [6] = "LIMIT",
	[7] = "TLS_REQUIRED", [8] = "SHUTDOWN", [9] = "INTERNAL",
}

local f = {
	msg = ProtoField.none("tlsplex.msg", "Negotiation message"),
	magic = ProtoField.bytes("tlsplex.magic", "Magic"),
	ver_min = ProtoField.uint8("tlsplex.ver_min", "Protocol version min"),
	ver_max = ProtoField.uint8("tlsplex.ver_max", "Protocol version max"),
	type = ProtoField.uint8("tlsplex.type", "Message type", base.DEC, msg_types),
	flags = ProtoField.uint8("tlsplex.flags", "Flags", base.HEX),
	body_len = ProtoField.uint16("tlsplex.body_len", "Body length"),
	msg_len = ProtoField.uint16("tlsplex.msg_len", "Message length"),
	tlv = ProtoField.none("tlsplex.tlv", "Field"),
	tlv_type = ProtoField.uint16("tlsplex.tlv.type", "Type", base.DEC, field_names, 0x7fff),
	tlv_crit = ProtoField.bool("tlsplex.tlv.critical", "Critical", 16, nil, 0x8000),
	tlv_len = ProtoField.uint16("tlsplex.tlv.len", "Length"),
	tlv_value = ProtoField.bytes("tlsplex.tlv.value", "Value"),
	node = ProtoField.string("tlsplex.node", "Node name"),
	tls_mode = ProtoField.uint8("tlsplex.tls_mode", "TLS mode", base.DEC, tls_modes),
	tls_min = ProtoField.uint16("tlsplex.tls_min", "TLS version min", base.HEX, tls_versions),
	tls_max = ProtoField.uint16("tlsplex.tls_max", "TLS version max", base.HEX, tls_versions),
	cipher = ProtoField.uint16("tlsplex.cipher", "Cipher suite", base.HEX, cipher_names),
	cert_present = ProtoField.uint8("tlsplex.cert_present", "Presents a certificate"),
	cert_want = ProtoField.uint8("tlsplex.cert_want", "Wants a certificate", base.DEC, cert_wants),
	max_streams = ProtoField.uint32("tlsplex.max_streams", "Max streams"),
	window = ProtoField.uint32("tlsplex.window", "Stream window"),
	max_frame = ProtoField.uint32("tlsplex.max_frame", "Max frame"),
	keepalive = ProtoField.uint32("tlsplex.keepalive_ms", "Keepalive (ms)"),
	nonce = ProtoField.bytes("tlsplex.nonce", "Nonce"),
	flow = ProtoField.uint32("tlsplex.flow", "Flow capabilities", base.HEX),
	flow_link_ack = ProtoField.bool("tlsplex.flow.link_ack", "LINK_ACK", 32, nil, 0x1),
	outcome = ProtoField.uint8("tlsplex.outcome", "Outcome", base.DEC, results),
	reason = ProtoField.uint16("tlsplex.reason", "Reason code", base.DEC, reasons),
	reason_name = ProtoField.string("tlsplex.reason_name", "Reason"),
	reason_text = ProtoField.string("tlsplex.reason_text", "Meaning"),
	out_tls_min = ProtoField.uint16("tlsplex.outcome.tls_min", "Agreed TLS min", base.HEX, tls_versions),
	out_tls_max = ProtoField.uint16("tlsplex.outcome.tls_max", "Agreed TLS max", base.HEX, tls_versions),
	common_cipher = ProtoField.uint16("tlsplex.common_cipher", "Common cipher suite", base.HEX, cipher_names),
	text = ProtoField.string("tlsplex.text", "Text"),
	tls_offset = ProtoField.uint64("tlsplex.tls_offset", "TLS starts at stream offset"),
	mux_offset = ProtoField.uint64("tlsplex.mux_offset", "Mux starts at stream offset"),
	peer_tls_offset = ProtoField.uint64("tlsplex.peer_tls_offset", "TLS starts in the other direction at stream offset"),
	peer_mux_offset = ProtoField.uint64("tlsplex.peer_mux_offset", "Mux starts in the other direction at stream offset"),
	stream_offset = ProtoField.uint64("tlsplex.stream_offset", "Stream offset of the data handed on"),
	handoff = ProtoField.string("tlsplex.handoff", "Rest of the direction"),
	frame = ProtoField.none("tlsplex.frame", "Mux frame"),
	fr_len = ProtoField.uint24("tlsplex.frame.len", "Length"),
	fr_type = ProtoField.uint8("tlsplex.frame.type", "Type", base.DEC, frame_types),
	fr_flags = ProtoField.uint8("tlsplex.frame.flags", "Flags", base.HEX),
	fr_stream = ProtoField.uint32("tlsplex.frame.stream", "Stream id"),
	fr_service = ProtoField.string("tlsplex.frame.service", "Service"),
	fr_hash = ProtoField.bytes("tlsplex.frame.bind_hash", "Transcript hash"),
	fr_code = ProtoField.uint32("tlsplex.frame.code", "Code", base.DEC, mux_codes),
	fr_incr = ProtoField.uint32("tlsplex.frame.increment", "Window increment"),
	fr_last = ProtoField.uint32("tlsplex.frame.last_stream", "Last stream id"),
	fr_opaque = ProtoField.bytes("tlsplex.frame.opaque", "Opaque"),
	fr_offset = ProtoField.uint64("tlsplex.frame.link_offset", "Link byte offset"),
	fr_data = ProtoField.bytes("tlsplex.frame.data", "Data"),
}
local fl = {}
for _, v in pairs(f) do fl[#fl + 1] = v end
tlsplex.fields = fl

local ex = {
	malformed = ProtoExpert.new("tlsplex.malformed", "Malformed negotiation message",
				    expert.group.MALFORMED, expert.severity.ERROR),
	refused = ProtoExpert.new("tlsplex.refused", "Link refused",
				  expert.group.RESPONSE_CODE, expert.severity.WARN),
	plaintext = ProtoExpert.new("tlsplex.plaintext", "Link agreed plaintext",
				    expert.group.SECURITY, expert.severity.WARN),
	early = ProtoExpert.new("tlsplex.early_data", "Bytes before the peer's negotiation message was answered",
				expert.group.PROTOCOL, expert.severity.ERROR),
}
tlsplex.experts = { ex.malformed, ex.refused, ex.plaintext, ex.early }

tlsplex.prefs.port = Pref.uint("Link port", DEFAULT_PORT,
	"TCP port of tlsplex links (the relay's listen port); 0 for none. Links on other ports are found by their magic.")

local tls_handle = Dissector.get("tls")
local tcp_seq_f = Field.new("tcp.seq")
local tcp_stream_f = Field.new("tcp.stream")

-- A TCP field's value in this frame, or nil.
local function field_value(fld)
	local v = fld()
	if v == nil then return nil end
	return v.value
end

-- State per link, kept on the first pass, which sees the frames in
-- order: the dialler's endpoint, the outcome and the frame that carried
-- it, and per direction the negotiation message, the stream offset
-- reached (cursor) and where a PDU that asked TCP for reassembly starts
-- (pending).  The stream offset of the bytes at hand decides how they
-- are dissected; each frame remembers its link, where its segment ends
-- and where a PDU reassembled in it starts, so that a later pass, in any
-- order, dissects it as the first did.  Nothing needs TCP's fields,
-- which a pass without a protocol tree (tshark -2) does not fill in.
local links = {}      -- first pass: the current link of each address pair
local frame_link = {} -- frame number: its link
local seg_end = {}    -- "frame/direction": the segment's end offset
local reasm_base = {} -- "frame/direction": the reassembled PDU's start

local function reset_state()
	links = {}
	frame_link = {}
	seg_end = {}
	reasm_base = {}
end
tlsplex.init = reset_state

local function endpoint(pinfo)
	return tostring(pinfo.src) .. "/" .. tostring(pinfo.src_port)
end

local function address_pair(pinfo)
	local a = endpoint(pinfo)
	local b = tostring(pinfo.dst) .. "/" .. tostring(pinfo.dst_port)
	if a < b then return a .. " " .. b end
	return b .. " " .. a
end

local function starts_with_magic(tvb)
	return tvb:len() >= 8 and tvb(0, 8):raw() == MAGIC
end

-- The link of this frame.  A new TCP connection (tcp.stream, when TCP's
-- fields are there), or a negotiation message opening a segment in a
-- direction that already had one, starts a new link on the same
-- addresses and ports.
local function link_of(tvb, pinfo, dir)
	local st = frame_link[pinfo.number]
	if st ~= nil then return st end
	local key = address_pair(pinfo)
	local sid = field_value(tcp_stream_f)
	st = links[key]
	if st ~= nil and not pinfo.visited and
	   ((sid ~= nil and st.sid ~= nil and sid ~= st.sid) or
	    (st.neg[dir] ~= nil and tvb:offset() > 0 and starts_with_magic(tvb))) then
		st = nil
	end
	if st == nil then
		st = { neg = {}, pending = {}, cursor = {}, sid = sid }
		if not pinfo.visited then links[key] = st end
	end
	frame_link[pinfo.number] = st
	return st
end

local function u64(n)
	return UInt64.new(n % 4294967296, math.floor(n / 4294967296))
end

local function name_or_num(t, v)
	return t[v] or tostring(v)
end

-- Decodes the TLV body [off, off + len) into tree; returns a summary
-- table (node, outcome, reason, text, tls_mode).
local function dissect_tlvs(tvb, off, len, tree)
	local s = {}
	local stop = off + len
	while off < stop do
		if stop - off < 4 then
			tree:add_proto_expert_info(ex.malformed, "TLV header runs past the body")
			return s
		end
		local t = tvb(off, 2):uint()
		local l = tvb(off + 2, 2):uint()
		local ft = t % 0x8000
		if off + 4 + l > stop then
			tree:add_proto_expert_info(ex.malformed, "TLV value runs past the body")
			return s
		end
		local item = tree:add(f.tlv, tvb(off, 4 + l))
		item:set_text((field_names[ft] or ("unknown field " .. ft)) .. " (" .. l .. " bytes)")
		item:add(f.tlv_type, tvb(off, 2))
		item:add(f.tlv_crit, tvb(off, 2))
		item:add(f.tlv_len, tvb(off + 2, 2))
		local v = off + 4
		if ft == 1 and l > 0 then
			item:add(f.node, tvb(v, l))
			s.node = tvb(v, l):string()
			item:append_text(": " .. s.node)
		elseif ft == 2 and l == 1 then
			item:add(f.tls_mode, tvb(v, 1))
			s.tls_mode = tvb(v, 1):uint()
			item:append_text(": " .. name_or_num(tls_modes, s.tls_mode))
		elseif ft == 3 and l == 4 then
			item:add(f.tls_min, tvb(v, 2))
			item:add(f.tls_max, tvb(v + 2, 2))
		elseif (ft == 4 or ft == 10) and l % 2 == 0 then
			for i = 0, l / 2 - 1 do
				item:add(ft == 4 and f.cipher or f.common_cipher, tvb(v + 2 * i, 2))
			end
		elseif ft == 5 and l == 2 then
			item:add(f.cert_present, tvb(v, 1))
			item:add(f.cert_want, tvb(v + 1, 1))
		elseif ft == 6 and l == 12 then
			item:add(f.max_streams, tvb(v, 4))
			item:add(f.window, tvb(v + 4, 4))
			item:add(f.max_frame, tvb(v + 8, 4))
		elseif ft == 7 and l == 4 then
			item:add(f.keepalive, tvb(v, 4))
		elseif ft == 8 and l > 0 then
			item:add(f.nonce, tvb(v, l))
		elseif ft == 9 and l == 7 then
			s.outcome = tvb(v, 1):uint()
			s.reason = tvb(v + 1, 2):uint()
			item:add(f.outcome, tvb(v, 1))
			item:add(f.reason, tvb(v + 1, 2))
			item:add(f.reason_name, tvb(v + 1, 2), reasons[s.reason] or "unknown")
			item:add(f.reason_text, tvb(v + 1, 2), reason_texts[s.reason] or "unknown reason code")
			item:add(f.out_tls_min, tvb(v + 3, 2))
			item:add(f.out_tls_max, tvb(v + 5, 2))
			item:append_text(": " .. name_or_num(results, s.outcome) .. ", " ..
					 (reasons[s.reason] or ("reason " .. s.reason)))
		elseif ft == 11 and l > 0 then
			item:add(f.text, tvb(v, l))
			s.text = tvb(v, l):string()
		elseif ft == 12 and l == 4 then
			item:add(f.flow, tvb(v, 4))
			item:add(f.flow_link_ack, tvb(v, 4))
		elseif l > 0 then
			if field_names[ft] ~= nil then
				item:add_proto_expert_info(ex.malformed, "bad length for " .. field_names[ft])
			end
			item:add(f.tlv_value, tvb(v, l))
		end
		off = off + 4 + l
	end
	return s
end

-- Decodes the negotiation message at the start of tvb.  Returns its
-- length and summary, 0 when more bytes are needed, or -1 when the bytes
-- are no negotiation message.
local function dissect_neg(tvb, pinfo, tree)
	local avail = tvb:len()
	if avail < HDR_LEN then return 0 end
	if tvb(0, 8):raw() ~= MAGIC then return -1 end
	local body = tvb(12, 2):uint()
	local mlen = HDR_LEN + body
	if mlen > MAX_LEN then
		local item = tree:add(f.msg, tvb(0, HDR_LEN))
		item:add_proto_expert_info(ex.malformed, "message longer than 4096 bytes")
		return -1
	end
	if avail < mlen then return 0 end
	local mt = tvb(10, 1):uint()
	local item = tree:add(f.msg, tvb(0, mlen))
	item:set_text("Negotiation message: " .. name_or_num(msg_types, mt))
	item:add(f.magic, tvb(0, 8))
	item:add(f.ver_min, tvb(8, 1))
	item:add(f.ver_max, tvb(9, 1))
	item:add(f.type, tvb(10, 1))
	item:add(f.flags, tvb(11, 1))
	item:add(f.body_len, tvb(12, 2))
	item:add(f.msg_len, tvb(0, mlen), mlen):set_generated()
	local s = dissect_tlvs(tvb, HDR_LEN, body, item)
	s.type = mt
	s.len = mlen
	s.item = item
	return mlen, s
end

local function dissect_frame(tvb, off, len, tree)
	local ty = tvb(off + 3, 1):uint()
	local item = tree:add(f.frame, tvb(off, FRAME_HDR_LEN + len))
	local stream = tvb(off + 5, 4):uint()
	item:set_text("Mux frame: " .. name_or_num(frame_types, ty) ..
		      (stream ~= 0 and (", stream " .. stream) or "") .. ", " .. len .. " bytes")
	item:add(f.fr_len, tvb(off, 3))
	item:add(f.fr_type, tvb(off + 3, 1))
	item:add(f.fr_flags, tvb(off + 4, 1))
	item:add(f.fr_stream, tvb(off + 5, 4))
	local p = off + FRAME_HDR_LEN
	if ty == 0 and len > 0 then
		item:add(f.fr_data, tvb(p, len))
	elseif ty == 1 and len >= 1 and tvb(p, 1):uint() + 1 <= len then
		local n = tvb(p, 1):uint()
		if n > 0 then item:add(f.fr_service, tvb(p + 1, n)) end
	elseif ty == 2 and len == 4 then
		item:add(f.fr_code, tvb(p, 4))
	elseif ty == 3 and len == 4 then
		item:add(f.fr_incr, tvb(p, 4))
	elseif ty == 4 and len == 8 then
		item:add(f.fr_opaque, tvb(p, 8))
	elseif ty == 5 and len >= 8 then
		item:add(f.fr_last, tvb(p, 4))
		item:add(f.fr_code, tvb(p + 4, 4))
		if len > 8 then item:add(f.text, tvb(p + 8, len - 8)) end
	elseif ty == 6 and len == 32 then
		item:add(f.fr_hash, tvb(p, 32))
	elseif ty == 7 and len == 8 then
		item:add(f.fr_offset, tvb(p, 8))
	end
	return name_or_num(frame_types, ty)
end

-- Splits tvb from off into whole units (TLS records: 5-byte header with
-- the length at byte 3; mux frames: 9-byte header, u24 length first).
-- Returns the end of the last whole unit and, when a unit is cut short,
-- the bytes still missing (nil: unknown, one more segment).
local function whole_units(tvb, off, tls)
	local avail = tvb:len()
	local hdr = tls and 5 or FRAME_HDR_LEN
	while off < avail do
		if avail - off < hdr then return off, nil end
		local ulen
		if tls then
			ulen = 5 + tvb(off + 3, 2):uint()
		else
			ulen = FRAME_HDR_LEN + tvb(off, 3):uint()
		end
		if avail - off < ulen then return off, off + ulen - avail end
		off = off + ulen
	end
	return off, 0
end

-- Hands tvb[off..] on: to TLS or to the mux frame decoder.  Asks TCP to
-- reassemble a record or frame cut short when it can.
local function hand_on(tvb, pinfo, tree, root, off, tls, base, st, dir)
	local avail = tvb:len()
	if off >= avail then return avail end
	local stop, missing = whole_units(tvb, off, tls)
	if stop < avail and pinfo.can_desegment > 0 then
		pinfo.desegment_offset = stop
		pinfo.desegment_len = missing or DESEGMENT_ONE_MORE_SEGMENT
		if not pinfo.visited then st.pending[dir] = base + stop end
	else
		stop = avail
	end
	if stop == off then return avail end
	root:add(f.stream_offset, tvb(off, 0), u64(base + off)):set_generated()
	if tls then
		if tls_handle ~= nil then
			tls_handle:call(tvb(off, stop - off):tvb(), pinfo, tree)
		end
	else
		local kinds = {}
		local p = off
		while p + FRAME_HDR_LEN <= stop do
			local len = tvb(p, 3):uint()
			if p + FRAME_HDR_LEN + len > stop then break end
			kinds[#kinds + 1] = dissect_frame(tvb, p, len, root)
			p = p + FRAME_HDR_LEN + len
		end
		if #kinds > 0 then
			local text = tostring(pinfo.cols.info)
			pinfo.cols.info:append((text == "" and "Mux " or ", ") .. table.concat(kinds, ", "))
		end
	end
	return avail
end

-- The stream offset of tvb's first byte in its direction.  TCP hands
-- a dissector either the rest of a frame's segment (a part of the
-- frame's data, so at a nonzero offset in it) or a PDU it reassembled
-- where the dissector asked (a buffer of its own, at offset 0).
local function stream_base(tvb, pinfo, st, dir)
	local key = pinfo.number .. "/" .. dir
	local reassembled = tvb:offset() == 0
	if pinfo.visited then
		if reassembled and reasm_base[key] ~= nil then return reasm_base[key] end
		return (seg_end[key] or tvb:len()) - tvb:len()
	end
	local base
	if reassembled and st.pending[dir] ~= nil then
		base = st.pending[dir]
		st.pending[dir] = nil
		reasm_base[key] = base
	else
		base = st.cursor[dir] or 0
	end
	local stop = base + tvb:len()
	st.cursor[dir] = stop
	if (seg_end[key] or 0) < stop then seg_end[key] = stop end
	return base
end

local function dissect(tvb, pinfo, tree)
	local dir = endpoint(pinfo)
	local st = link_of(tvb, pinfo, dir)
	local base = stream_base(tvb, pinfo, st, dir)

	-- A frame can take several calls (a reassembled PDU, then the rest
	-- of the segment); only the first replaces TCP's columns.
	if tostring(pinfo.cols.protocol) == "TCP" then
		pinfo.cols.protocol = "tlsplex"
		pinfo.cols.info = ""
	end
	local root = tree:add(tlsplex, tvb())
	local off = 0

	if base == 0 then
		local n, s = dissect_neg(tvb, pinfo, root)
		if n == 0 then
			if pinfo.can_desegment > 0 then
				pinfo.desegment_offset = 0
				pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
				if not pinfo.visited then st.pending[dir] = base end
			end
			pinfo.cols.info:append("negotiation message (incomplete)")
			return tvb:len()
		end
		if n < 0 then
			root:add_proto_expert_info(ex.malformed, "the stream does not start with a negotiation message")
			return tvb:len()
		end
		off = n
		if not pinfo.visited then
			st.neg[dir] = s
			if s.type == 1 then st.dialler = dir end
			if s.type ~= 1 and s.outcome ~= nil then
				st.outcome = s.outcome
				st.outcome_frame = pinfo.number
			end
		end
		local info = (msg_types[s.type] or ("message type " .. s.type)) ..
			     (s.node and (" node=" .. s.node) or "")
		if s.type == 1 then
			if s.tls_mode ~= nil then
				info = info .. " tls=" .. name_or_num(tls_modes, s.tls_mode)
			end
		elseif s.outcome ~= nil then
			info = info .. " outcome=" .. name_or_num(results, s.outcome) ..
			       " reason=" .. (reasons[s.reason] or tostring(s.reason))
		end
		pinfo.cols.info:append(info)
		root:append_text(", " .. info)
		local offer = st.dialler and st.neg[st.dialler]
		if s.type == 2 and offer ~= nil then
			local pf = s.outcome == 1 and f.peer_tls_offset or f.peer_mux_offset
			s.item:add(pf, tvb(0, 0), u64(offer.len)):set_generated()
		end
		if s.type == 3 then
			s.item:add_proto_expert_info(ex.refused,
				"REFUSE " .. (reasons[s.reason] or tostring(s.reason)) ..
				(s.text and (": " .. s.text) or ""))
		elseif s.type == 2 and s.outcome == 1 then
			s.item:add(f.tls_offset, tvb(0, 0), u64(n)):set_generated()
			s.item:add(f.handoff, tvb(0, 0), "TLS"):set_generated()
		elseif s.type == 2 and s.outcome == 0 then
			s.item:add(f.mux_offset, tvb(0, 0), u64(n)):set_generated()
			s.item:add(f.handoff, tvb(0, 0), "mux frames (plaintext)"):set_generated()
			s.item:add_proto_expert_info(ex.plaintext,
				"plaintext: " .. (reasons[s.reason] or tostring(s.reason)))
		end
		if off >= tvb:len() then return off end
	elseif st.neg[dir] == nil then
		root:append_text(", data from before the capture's view of the negotiation")
		return tvb:len()
	end

	if st.outcome == nil or pinfo.number < st.outcome_frame then
		-- The dialler sends nothing after its OFFER until it has the
		-- answer.
		root:add_proto_expert_info(ex.early, (tvb:len() - off) .. " bytes")
		pinfo.cols.info:append(" [bytes before the answer]")
		return tvb:len()
	end
	if st.outcome == 1 then
		root:append_text(", TLS from stream offset " .. (base + off))
		return hand_on(tvb, pinfo, tree, root, off, true, base, st, dir)
	elseif st.outcome == 0 then
		root:append_text(", mux frames")
		return hand_on(tvb, pinfo, tree, root, off, false, base, st, dir)
	end
	root:add_proto_expert_info(ex.early, (tvb:len() - off) .. " bytes after a REFUSE")
	return tvb:len()
end

function tlsplex.dissector(tvb, pinfo, tree)
	return dissect(tvb, pinfo, tree)
end

-- Claims a TCP stream whose first bytes are the magic, and every later
-- segment of a stream claimed so.
local function heuristic(tvb, pinfo, tree)
	if frame_link[pinfo.number] == nil and links[address_pair(pinfo)] == nil then
		if not starts_with_magic(tvb) then return false end
		local seq = field_value(tcp_seq_f)
		if seq ~= nil and seq ~= 1 then return false end
	end
	dissect(tvb, pinfo, tree)
	return true
end
tlsplex:register_heuristic("tcp", heuristic)

local current_port = 0
local function register_port()
	local t = DissectorTable.get("tcp.port")
	if current_port ~= 0 then t:remove(current_port, tlsplex) end
	current_port = tlsplex.prefs.port
	if current_port ~= 0 then t:add(current_port, tlsplex) end
end
DissectorTable.get("tcp.port"):add_for_decode_as(tlsplex)
function tlsplex.prefs_changed()
	register_port()
end
register_port()
