import NIOCore
import ObjectStore
import Testing

/// SigV4 against the worked examples in AWS's S3 API reference ("Signature Calculations for
/// the Authorization Header: Transferring Payload in a Single Chunk"), and the pieces of S3
/// configuration that need no server. The random cross-check against botocore is
/// tests/test_sigv4_crosscheck.py.
@Suite struct S3SigningTests {
    static let example = S3Configuration(
        bucket: "examplebucket", endpoint: "https://s3.amazonaws.com", region: "us-east-1", pathStyle: false,
        credentials: S3Credentials(accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"))
    static let may24 = 1_369_353_600  // 2013-05-24T00:00:00Z

    func authorization(_ method: String, key: String?, query: [(String, String)] = [], headers: [(String, String)] = [],
                       body: String? = nil, cutAt cuts: [Int] = []) throws -> (String, [(String, String)]) {
        let b = try S3RequestBuilder(Self.example)
        // The body in buffers cut at `cuts`: signed as the bytes they hold together.
        var parts: ObjectBody?
        if let body {
            let whole = ByteBuffer(string: body)
            parts = ObjectBody()
            for (from, to) in zip([0] + cuts, cuts + [whole.readableBytes]) { parts!.append(whole.getSlice(at: from, length: to - from)!) }
        }
        let (url, signed) = b.build(method: method, key: key, query: query, headers: headers, body: parts, date: Self.may24)
        return (url, signed)
    }

    func value(_ headers: [(String, String)], _ name: String) -> String? { headers.first { $0.0 == name }?.1 }

    @Test func getObjectWithRange() throws {
        let (url, h) = try authorization("GET", key: "test.txt", headers: [("Range", "bytes=0-9")])
        #expect(url == "https://examplebucket.s3.amazonaws.com/test.txt")
        #expect(value(h, "authorization") == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        #expect(value(h, "x-amz-date") == "20130524T000000Z")
        #expect(value(h, "x-amz-content-sha256") == SigV4Signer.emptyPayloadHash)
    }

    @Test(arguments: [[], [1], [7, 8, 20]])
    func putObjectWithEncodedKeyAndBody(cuts: [Int]) throws {
        let (url, h) = try authorization("PUT", key: "test$file.text",
                                         headers: [("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-storage-class", "REDUCED_REDUNDANCY")],
                                         body: "Welcome to Amazon S3.", cutAt: cuts)
        #expect(url == "https://examplebucket.s3.amazonaws.com/test%24file.text")
        #expect(value(h, "x-amz-content-sha256") == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        #expect(value(h, "authorization")?.hasSuffix("SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd") == true)
    }

    @Test func bucketSubresourceAndListQuery() throws {
        let (lifecycleURL, lifecycle) = try authorization("GET", key: nil, query: [("lifecycle", "")])
        #expect(lifecycleURL == "https://examplebucket.s3.amazonaws.com/?lifecycle=")
        #expect(value(lifecycle, "authorization")?.hasSuffix("Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543") == true)
        let (listURL, list) = try authorization("GET", key: nil, query: [("prefix", "J"), ("max-keys", "2")])
        #expect(listURL == "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J", "sorted, as signed")
        #expect(value(list, "authorization")?.hasSuffix("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7") == true)
    }

    @Test func unsignedPayloadOnlyOverTLS() throws {
        var c = Self.example
        c.unsignedPayload = true
        let tls = try S3RequestBuilder(c).build(method: "PUT", key: "k", query: [], headers: [], body: ObjectBody(ByteBuffer(string: "x")), date: Self.may24)
        #expect(value(tls.headers, "x-amz-content-sha256") == "UNSIGNED-PAYLOAD")
        c.endpoint = "http://127.0.0.1:8333"
        c.pathStyle = true
        let plain = try S3RequestBuilder(c).build(method: "PUT", key: "k", query: [], headers: [], body: ObjectBody(ByteBuffer(string: "x")), date: Self.may24)
        #expect(value(plain.headers, "x-amz-content-sha256") != "UNSIGNED-PAYLOAD", "an http body is always signed")
        #expect(plain.url == "http://127.0.0.1:8333/examplebucket/k")
        #expect(value(plain.headers, "host") == "127.0.0.1:8333")
    }

    @Test func sessionTokenIsSentAndSigned() throws {
        var c = Self.example
        c.credentials.sessionToken = "TOKEN/with+chars="
        let (_, h) = try S3RequestBuilder(c).build(method: "GET", key: "k", query: [], headers: [], body: nil, date: Self.may24)
        #expect(value(h, "x-amz-security-token") == "TOKEN/with+chars=")
        #expect(value(h, "authorization")?.contains("x-amz-security-token") == true)
    }

    @Test func s3URLs() {
        #expect(S3Configuration.parseURL("s3://bucket")! == ("bucket", ""))
        #expect(S3Configuration.parseURL("s3://my-bucket/a/b/")! == ("my-bucket", "a/b/"))
        #expect(S3Configuration.parseURL("s3://my.bucket//pre")! == ("my.bucket", "pre"))
        #expect(S3Configuration.parseURL("s3://ab") == nil, "too short")
        #expect(S3Configuration.parseURL("s3://-bucket") == nil)
        #expect(S3Configuration.parseURL("file:///tmp") == nil)
        let c = S3Configuration(bucket: "b", prefix: "pre", credentials: S3Credentials(accessKeyId: "a", secretAccessKey: "s"))
        #expect(c.prefix == "pre/")
        #expect(c.endpoint == "https://s3.amazonaws.com")
        #expect(S3Configuration(bucket: "b", region: "eu-west-3", credentials: c.credentials).endpoint == "https://s3.eu-west-3.amazonaws.com")
    }

    @Test func credentialsFromTheEnvironment() {
        #expect(S3Configuration.credentials(from: [:]) == nil)
        #expect(S3Configuration.credentials(from: ["AWS_ACCESS_KEY_ID": "a"]) == nil, "a key id alone is not enough")
        #expect(S3Configuration.credentials(from: ["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"])
                == S3Credentials(accessKeyId: "a", secretAccessKey: "s", sessionToken: "t"))
        #expect(S3Configuration.credentials(from: ["KAFKA_S3_ACCESS_KEY": "k", "KAFKA_S3_SECRET_KEY": "ks"])
                == S3Credentials(accessKeyId: "k", secretAccessKey: "ks"))
        #expect(S3Configuration.credentials(from: ["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s",
                                                   "KAFKA_S3_ACCESS_KEY": "k", "KAFKA_S3_SECRET_KEY": "ks"])?.accessKeyId == "a",
                "the standard AWS variables win")
    }

    @Test func whatIsRetried() {
        func e(_ status: Int, _ code: String) -> S3Error { S3Error(kind: .response, status: status, code: code, message: "") }
        for retryable in [e(500, "InternalError"), e(503, "SlowDown"), e(503, "ServiceUnavailable"), e(400, "RequestTimeout"),
                          e(429, "TooManyRequests"), e(409, "ConditionalRequestConflict"),
                          S3Error(kind: .transport, code: "ConnectionReset", message: "")] {
            #expect(retryable.isRetryable, "\(retryable)")
        }
        for hopeless in [e(403, "AccessDenied"), e(403, "SignatureDoesNotMatch"), e(404, "NoSuchKey"), e(404, "NoSuchBucket"),
                         e(412, "PreconditionFailed"), e(416, "InvalidRange"), e(400, "InvalidArgument")] {
            #expect(!hopeless.isRetryable, "\(hopeless)")
        }
        #expect(e(500, "InternalError").outcomeUnknown, "a 5xx PUT may have landed")
        #expect(e(503, "SlowDown").outcomeUnknown)
        #expect(!e(400, "RequestTimeout").outcomeUnknown, "S3 gave up before acting")
    }
}
