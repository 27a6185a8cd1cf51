/// What an error may say in a log line or a stored record.
///
/// `String(describing:)`, never `String(reflecting:)`: PostgresNIO keeps its description free of
/// the server's DETAIL, while its debug description includes it ("Failing row contains (…)",
/// "Key (…)=(…)"), which can be patient data.
public func loggable(_ error: any Error) -> String {
    "\(type(of: error)): \(String(describing: error))"
}
