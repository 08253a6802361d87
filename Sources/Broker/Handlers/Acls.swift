import KafkaProtocol

/// DescribeAcls, CreateAcls, DeleteAcls with no authorizer configured (ACLs arrive with
/// issue 9): Kafka's `AclApis` answers SECURITY_DISABLED, with these messages, when
/// `authorizer` is None.
extension Broker {
    func describeAcls(_ r: DescribeAclsRequest) -> DescribeAclsResponse {
        var resp = DescribeAclsResponse()
        resp.errorCode = ErrorCode.securityDisabled.rawValue
        resp.errorMessage = "No Authorizer is configured on the broker"
        return resp
    }

    /// AclApis.handleCreateAcls → CreateAclsRequest.getErrorResponse: one result per creation.
    func createAcls(_ r: CreateAclsRequest) -> CreateAclsResponse {
        var resp = CreateAclsResponse()
        var result = CreateAclsResponse.AclCreationResult()
        result.errorCode = ErrorCode.securityDisabled.rawValue
        result.errorMessage = "No Authorizer is configured."
        resp.results = Array(repeating: result, count: r.creations.count)
        return resp
    }

    /// AclApis.handleDeleteAcls → DeleteAclsRequest.getErrorResponse: one result per filter.
    func deleteAcls(_ r: DeleteAclsRequest) -> DeleteAclsResponse {
        var resp = DeleteAclsResponse()
        var result = DeleteAclsResponse.DeleteAclsFilterResult()
        result.errorCode = ErrorCode.securityDisabled.rawValue
        result.errorMessage = "No Authorizer is configured."
        resp.filterResults = Array(repeating: result, count: r.filters.count)
        return resp
    }
}
