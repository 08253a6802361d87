import KafkaProtocol

/// SaslHandshake and SaslAuthenticate on a PLAINTEXT listener (the only kind Tern has).
///
/// Kafka's SaslServerAuthenticator handles these only on SASL listeners; on a PLAINTEXT
/// listener they reach KafkaApis, which answers ILLEGAL_SASL_STATE
/// (`handleSaslHandshakeRequest`: no enabled mechanisms; `handleSaslAuthenticateRequest`:
/// with the message below). The connection stays open.
extension Broker {
    func saslHandshake(_ r: SaslHandshakeRequest) -> SaslHandshakeResponse {
        var resp = SaslHandshakeResponse()
        resp.errorCode = ErrorCode.illegalSaslState.rawValue
        resp.mechanisms = []
        return resp
    }

    func saslAuthenticate(_ r: SaslAuthenticateRequest) -> SaslAuthenticateResponse {
        var resp = SaslAuthenticateResponse()
        resp.errorCode = ErrorCode.illegalSaslState.rawValue
        resp.errorMessage = "SaslAuthenticate request received after successful authentication"
        return resp
    }
}
