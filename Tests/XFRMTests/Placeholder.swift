import Testing
@testable import XFRM
