#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Vapor

/// The addresses of the proxies in front of the gateway (an ingress controller, the mesh's
/// sidecar) whose `X-Forwarded-For` entries are believed. The client is the nearest address in
/// that header that is not one of them; with no proxies configured it is the socket's peer,
/// whatever the header claims. Only the proxies' own addresses belong here, never a network
/// clients are in: a client inside a trusted block is walked past, to whatever it wrote.
public struct TrustedProxies: Sendable, Equatable {
    struct Network: Sendable, Equatable {
        let bytes: [UInt8]
        let prefix: Int

        func contains(_ address: [UInt8]) -> Bool {
            guard address.count == bytes.count else { return false }
            var left = prefix
            for (a, b) in zip(address, bytes) where left > 0 {
                let bits = min(8, left)
                let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
                if a & mask != b & mask { return false }
                left -= bits
            }
            return true
        }
    }

    let networks: [Network]

    public static let none = TrustedProxies(networks: [])
    /// 127.0.0.0/8 and ::1.
    public static let loopback = TrustedProxies(networks: [
        Network(bytes: [127, 0, 0, 0], prefix: 8), Network(bytes: Array(repeating: 0, count: 15) + [1], prefix: 128),
    ])

    init(networks: [Network]) { self.networks = networks }

    /// Parses `10.0.0.0/8`, `127.0.0.6`, `fd00::/8`…; a failure names the first entry that is not one.
    public static func parse(_ entries: [String]) -> Result<TrustedProxies, InvalidNetwork> {
        var networks: [Network] = []
        for entry in entries {
            let parts = entry.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard let bytes = parts.first.flatMap(Self.bytes(of:)) else { return .failure(InvalidNetwork(entry: entry)) }
            let width = bytes.count * 8
            let prefix = parts.count == 2 ? Int(parts[1]) : width
            guard let prefix, (0...width).contains(prefix) else { return .failure(InvalidNetwork(entry: entry)) }
            networks.append(Network(bytes: bytes, prefix: prefix))
        }
        return .success(TrustedProxies(networks: networks))
    }

    public struct InvalidNetwork: Error, Sendable {
        public let entry: String
    }

    /// The address's bytes (an IPv4-mapped IPv6 address as its IPv4 form); nil if not an address.
    static func bytes(of text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF { return Array(bytes[12...]) }
        return bytes
    }

    static func withoutPort(_ hop: String) -> String {
        if hop.hasPrefix("["), let end = hop.firstIndex(of: "]") {
            return String(hop[hop.index(after: hop.startIndex)..<end])
        }
        let parts = hop.split(separator: ":", omittingEmptySubsequences: false)
        return parts.count == 2 && parts[0].contains(".") ? String(parts[0]) : hop
    }

    func trusts(_ address: String) -> Bool {
        guard !networks.isEmpty, let bytes = Self.bytes(of: address) else { return false }
        return networks.contains { $0.contains(bytes) }
    }

    /// The client behind `peer`: walking `X-Forwarded-For` from its end while each hop is a
    /// trusted proxy, the first address that is not; an entry that is no address stops the walk
    /// at the last proxy (a client can write anything in front of what the proxies appended).
    /// A hop written with a port (`192.0.2.1:5678`, `[2001:db8::1]:443`) counts without it.
    public func client(peer: String, forwardedFor: [String]) -> String {
        guard trusts(peer) else { return peer }
        var client = peer
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.map {
            Self.withoutPort($0.trimmingCharacters(in: .whitespaces))
        }
        for hop in hops.reversed() {
            guard Self.bytes(of: hop) != nil else { break }
            client = hop
            guard trusts(hop) else { break }
        }
        return client
    }
}

extension Application {
    private struct TrustedProxiesKey: StorageKey {
        typealias Value = TrustedProxies
    }

    /// Whose `X-Forwarded-For` this process believes (see `TrustedProxies`); none by default.
    public var trustedProxies: TrustedProxies {
        get { storage[TrustedProxiesKey.self] ?? .none }
        set { storage[TrustedProxiesKey.self] = newValue }
    }

    private struct GatewayAddressesKey: StorageKey {
        typealias Value = TrustedProxies
    }

    /// A service's callers whose `X-Forwarded-For` its audit trail records (the gateway's
    /// addresses); loopback by default.
    public var gatewayAddresses: TrustedProxies {
        get { storage[GatewayAddressesKey.self] ?? .loopback }
        set { storage[GatewayAddressesKey.self] = newValue }
    }
}

extension Request {
    /// The client's address, for rate limits and for what is passed on as `X-Forwarded-For`:
    /// the socket's peer, or behind trusted proxies the address they forwarded for.
    public var clientAddress: String? {
        guard let peer = remoteAddress?.ipAddress else { return nil }
        return application.trustedProxies.client(peer: peer, forwardedFor: headers[.xForwardedFor])
    }
}
