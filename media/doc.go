// Package media is where RTP/SRTP relay and media processing will live
// (pion/rtp, pion/srtp): G.711, RFC 4733 DTMF, TDM B-channel PCM <-> RTP.
// It holds no code yet: calls pass SDP through unchanged until the media
// anchoring issue, and this folder keeps the design's layout in place.
package media
