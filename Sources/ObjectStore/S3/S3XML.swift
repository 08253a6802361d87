#if canImport(FoundationXML)
import FoundationXML
#endif
import Foundation

/// A parsed XML element: enough of the DOM for S3's small response documents.
struct XMLElementNode: Sendable {
    var name: String
    var text = ""
    var children: [XMLElementNode] = []

    func child(_ name: String) -> XMLElementNode? { children.first { $0.name == name } }
    func all(_ name: String) -> [XMLElementNode] { children.filter { $0.name == name } }
    /// Text of the first child with that name.
    subscript(_ name: String) -> String? { child(name)?.text }

    /// Parses a whole document; nil when it is not well-formed XML.
    static func parse(_ bytes: [UInt8]) -> XMLElementNode? {
        let delegate = TreeBuilder()
        let parser = XMLParser(data: Data(bytes))
        parser.shouldProcessNamespaces = false
        parser.delegate = delegate
        guard parser.parse(), let root = delegate.root else { return nil }
        return root
    }

    /// Escapes text for an XML element's content.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for c in text.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default:
                // XML 1.0 cannot carry most control characters even escaped as text;
                // character references are the only way, and S3 accepts them.
                if c.value < 0x20 && c != "\t" && c != "\n" && c != "\r" { out += "&#\(c.value);" } else { out.unicodeScalars.append(c) }
            }
        }
        return out
    }
}

private final class TreeBuilder: NSObject, XMLParserDelegate {
    var stack: [XMLElementNode] = []
    var root: XMLElementNode?

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
        // Element names may come prefixed with a namespace; S3's are not, but be lenient.
        let local = elementName.split(separator: ":").last.map(String.init) ?? elementName
        stack.append(XMLElementNode(name: local))
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if !stack.isEmpty { stack[stack.count - 1].text += string }
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        guard let done = stack.popLast() else { return }
        if stack.isEmpty { root = done } else { stack[stack.count - 1].children.append(done) }
    }
}
